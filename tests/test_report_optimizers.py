"""The report of an optimizer comparison, on synthetic records: sensitivity figures for keys that are not a learning
rate or that include 0 (an honest axis, named), families of different optimizers side by side at their own best,
recipes that name the optimizer, its non-default keys and the schedule, and the learning-rate schedule figure."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
from synthetic_report import MODELS, write_params, write_results

from mnistbench.params import load_params
from mnistbench.report import aggregate, families, figures, recipes
from mnistbench.report.context import _lr_curve, schedule_section, sensitivity_figures
from mnistbench.report.inputs import load_inputs
from mnistbench.report.render import run_report
from mnistbench.sweep import parse_setting, sweep_entries

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("values", "name", "threshold"), [
    ([1e-4, 1e-3, 1e-2], "log", None),
    ([0.1, 1.0], "log", None),
    ([0.0, 1e-4, 1e-3, 1e-2], "symlog", 1e-4),
    ([0.0, 0.5, 0.9], "linear", None),
    ([0.0, 0.9], "linear", None),
    ([0.001, 0.003, 0.005], "linear", None),
    ([-1.0, 0.5, 10.0], "linear", None),
])
def test_axis_is_log_only_for_positive_values_spanning_a_decade_and_symlog_keeps_zero(values, name, threshold):
    scale = figures.axis_scale(values)
    assert (scale.name, scale.threshold) == (name, threshold)
    assert scale.note.startswith(name)


def point(x: float, val: list[float], selected: bool = False) -> dict:
    return {"x": x, "val": np.array(val), "test": np.array(val), "n_diverged": 0, "diverged_epoch": None,
            "selected": selected}


def test_the_drawn_axis_is_the_chosen_scale_and_its_label_says_which():
    series = [figures.SensitivitySeries("wd", [point(0.0, [0.9]), point(1e-4, [0.92], True), point(1e-2, [0.8])],
                                        "#1f77b4")]
    axes = figures.sensitivity_plot(series, "weight_decay").axes[0]
    assert axes.get_xscale() == "symlog"
    assert axes.get_xlabel() == "weight_decay (symlog scale: linear from 0 to 0.0001, log beyond)"
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["0", "0.0001", "0.01"]
    series = [figures.SensitivitySeries("m", [point(0.0, [0.9]), point(0.9, [0.95], True)], "#1f77b4")]
    axes = figures.sensitivity_plot(series, "momentum").axes[0]
    assert axes.get_xscale() == "linear" and axes.get_xlabel() == "momentum (linear scale)"


def family(base: str, *settings: str) -> dict[str, dict]:
    runs = {base: MODELS[base]}
    return sweep_entries(base, runs, [parse_setting(setting) for setting in settings])


@pytest.fixture(scope="module")
def optimizer_sweep(tmp_path_factory):
    """Three families: sgd over momentum (0 included), scratch adam over lr x beta1, torch adam over lr."""
    models = {**MODELS, **family("scratch_sgd", "momentum=0,0.01,0.1,0.9"),
              **family("scratch_adam", "lr=1e-4,1e-3,1e-2", "beta1=0.5,0.9"), **family("torch_adam", "lr=1e-4,1e-2")}
    skill = {name: 0.95 + 0.02 * entry.get("momentum", 0.0) for name, entry in models.items()}
    for name, entry in models.items():
        if entry["optimizer"] == "adam":
            skill[name] = 0.978 - 0.03 * np.log10(entry["lr"] / 1e-3) ** 2 - 0.02 * (entry["beta1"] != 0.9)
    root = tmp_path_factory.mktemp("optimizer_sweep")
    params = write_params(root, seeds=(0, 1), models=models)
    layout = write_results(root, params, skill=skill)
    run_report(params, layout)
    return {"params": load_params(params.path), "layout": layout, "html": layout.report_html.read_text()}


def figure_tags(html: str) -> dict[str, tuple[str, str]]:
    """key -> (families, scale) of every sensitivity figure in the report."""
    tags = re.findall(r'<img alt="sensitivity to ([^:]+): ([^"]*)" data-scale="([^"]*)"', html)
    return {key: (families, scale) for key, families, scale in tags}


def test_one_figure_per_swept_key_each_with_the_families_that_sweep_it_and_its_scale(optimizer_sweep):
    tags = figure_tags(optimizer_sweep["html"])
    assert list(tags)[0] == "lr" and set(tags) == {"lr", "momentum", "beta1"}
    assert set(tags["lr"][0].split(", ")) == {"scratch_adam", "torch_adam"}
    assert tags["lr"][1] == "log scale"
    assert tags["momentum"] == ("scratch_sgd", "symlog scale: linear from 0 to 0.01, log beyond")
    assert tags["beta1"] == ("scratch_adam", "linear scale")


def test_a_family_sweeping_two_keys_is_drawn_through_its_selected_member(optimizer_sweep):
    params, layout = optimizer_sweep["params"], optimizer_sweep["layout"]
    metrics = json.loads(layout.metrics_json.read_text())
    assert metrics["families"]["scratch_adam"]["selected"] == "scratch_adam"
    table = aggregate.run_table(load_inputs(params, layout))
    colours = figures.model_colours([entry["selected"] for entry in metrics["families"].values()])
    drawn = {figure["key"]: figure for figure in sensitivity_figures(params, metrics, table, colours)}
    assert set(drawn) == {"lr", "momentum", "beta1"}
    series = {one.family: one for one in _series(params, metrics, table, colours, "lr")}
    adam = series["scratch_adam"]
    assert sorted(one["x"] for one in adam.points) == [1e-4, 1e-3, 1e-2] and adam.held == "beta1 0.9"
    assert sorted(one["x"] for one in adam.others) == [1e-4, 1e-3, 1e-2]
    assert [one["x"] for one in adam.points if one["selected"]] == [1e-3]
    assert series["torch_adam"].held == "" and series["torch_adam"].others == []


def _series(params, metrics, table, colours, key):
    from mnistbench.report.context import _sensitivity_series

    names = [name for name in metrics["family_order"] if key in metrics["families"][name]["swept"]]
    return [_sensitivity_series(params, metrics, table, name, key, colours) for name in names]


def test_the_setting_of_a_member_names_every_swept_key(optimizer_sweep):
    rows = re.search(r'<table id="models-table"[^>]*>(.*?)</table>', optimizer_sweep["html"], re.DOTALL).group(1)
    assert "lr 0.01, beta1 0.5" in rows and "momentum 0.01" in rows


ADAMW = {"impl": "scratch", "optimizer": "adamw", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
         "weight_decay": 0.1, "epochs": 15, "batch_size": 128,
         "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}}


@pytest.mark.parametrize(("value", "text"), [(0.001, "1e-3"), (3e-4, "3e-4"), (1e-8, "1e-8"), (0.9, "0.9"),
                                             (0, "0"), (0.0, "0"), (0.01, "0.01"), (2e4, "2e4"), (12.5, "12.5")])
def test_recipe_numbers_are_short(value, text):
    assert recipes.number(value) == text


@pytest.mark.parametrize(("run", "text"), [
    (ADAMW, "scratch AdamW lr 1e-3, wd 0.1, cosine (warmup 1 ep, min 0), batch 128, 15 epochs"),
    ({**ADAMW, "weight_decay": 0.01, "schedule": {"name": "constant"}}, "scratch AdamW lr 1e-3, constant, batch 128, "
                                                                        "15 epochs"),
    ({**ADAMW, "optimizer": "adam", "weight_decay": 0.01, "beta2": 0.99, "batch_size": 0, "impl": "torch",
      "schedule": {"name": "step", "step_epochs": 5, "gamma": 0.1}},
     "torch Adam lr 1e-3, beta2 0.99, wd 0.01, step (x0.1 every 5 ep), full batch, 15 epochs"),
    ({"impl": "scratch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0,
      "epochs": 3, "batch_size": 32, "schedule": {"name": "cosine", "warmup_epochs": 0, "min_lr": 1e-4}},
     "scratch SGD lr 0.1, momentum 0.9, Nesterov, cosine (no warmup, min 1e-4), batch 32, 3 epochs"),
    ({"impl": "scratch", "optimizer": "rmsprop", "lr": 0.001, "alpha": 0.9, "eps": 1e-8, "momentum": 0.0,
      "centered": True, "weight_decay": 0.0, "epochs": 3, "batch_size": 32, "schedule": {"name": "constant"}},
     "scratch RMSprop lr 1e-3, alpha 0.9, centered, constant, batch 32, 3 epochs"),
    ({"impl": "scratch", "optimizer": "adagrad", "lr": 0.01, "eps": 1e-10, "weight_decay": 0.0,
      "initial_accumulator_value": 0.1, "epochs": 3, "batch_size": 32, "schedule": {"name": "constant"}},
     "scratch Adagrad lr 0.01, initial accumulator 0.1, constant, batch 32, 3 epochs"),
])
def test_the_recipe_names_the_optimizer_its_non_default_keys_and_the_schedule(run, text):
    assert recipes.recipe_text(run) == text


def test_the_defaults_left_out_of_recipes_are_torch_optims_own():
    torch = pytest.importorskip("torch")
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
    assert set(classes) == set(recipes.TORCH_DEFAULTS)
    for optimizer, torch_class in classes.items():
        signature = {name: parameter.default for name, parameter in
                     inspect.signature(torch_class.__init__).parameters.items()}
        if "betas" in signature:
            signature["beta1"], signature["beta2"] = signature["betas"]
        for key, default in recipes.TORCH_DEFAULTS[optimizer].items():
            assert signature[key] == default and type(signature[key]) in (type(default), int), (optimizer, key)


def test_the_schedule_figure_draws_each_lr_curve_as_a_fraction_of_its_entrys_lr():
    step = np.array([0, 10, 20, 29])
    curves = [figures.LearningRateCurve("a", step, np.array([0.01, 0.1, 0.05, 0.0]), 0.1, "a: cosine"),
              figures.LearningRateCurve("b", step[:2], np.array([1e-3, 1e-3]), 1e-3, "b: constant")]
    axes = figures.lr_schedule_plot(curves, {"a": "#1f77b4", "b": "#ff7f0e"}).axes[0]
    assert [list(line.get_ydata()) for line in axes.lines] == [pytest.approx([0.1, 1.0, 0.5, 0.0]), [1.0, 1.0]]
    assert [list(line.get_xdata()) for line in axes.lines] == [[0, 10, 20, 29], [0, 10]]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["a: cosine", "b: constant"]


COSINE = {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}
OPTIMIZER_BASES = {
    "sgd": {**MODELS["scratch_sgd"], "lr": 0.3, "schedule": COSINE},
    "momentum": {**MODELS["scratch_sgd"], "lr": 0.03, "momentum": 0.9, "schedule": COSINE},
    "adamw": {**MODELS["scratch_adam"], "optimizer": "adamw", "weight_decay": 0.01, "schedule": COSINE},
    "rmsprop": {"impl": "scratch", "optimizer": "rmsprop", "lr": 0.001, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0,
                "centered": False, "weight_decay": 0.0, "epochs": 3, "batch_size": 128,
                "schedule": {"name": "constant"}},
}


@pytest.fixture(scope="module")
def optimizer_comparison(tmp_path_factory):
    """Four optimizer families: three on warmup + cosine, rmsprop constant; adamw swept over weight decay (0 in)."""
    models = dict(OPTIMIZER_BASES)
    for base, setting in (("sgd", "lr=0.1,1"), ("momentum", "lr=0.01,0.1"), ("adamw", "weight_decay=0,1e-4,1e-2"),
                          ("rmsprop", "lr=1e-4,1e-3,1e-2")):
        models |= sweep_entries(base, OPTIMIZER_BASES, [parse_setting(setting)])
    skill = {name: 0.96 - 0.02 * abs(np.log10(entry["lr"] / OPTIMIZER_BASES[entry.get("family", name)]["lr"]))
             for name, entry in models.items()}
    skill["adamw__weight_decay_0p0001"] = 0.975
    root = tmp_path_factory.mktemp("optimizer_comparison")
    params = write_params(root, seeds=(0, 1), models=models)
    layout = write_results(root, params, skill=skill)
    run_report(params, layout)
    return {"params": params, "layout": layout, "html": layout.report_html.read_text(),
            "metrics": json.loads(layout.metrics_json.read_text())}


def test_the_summary_recipes_name_optimizer_non_default_keys_and_schedule(optimizer_comparison):
    metrics = optimizer_comparison["metrics"]
    assert metrics["families"]["adamw"]["selected"] == "adamw__weight_decay_0p0001"
    cells = re.findall(r'<td class="text small recipe">([^<]*)</td>', optimizer_comparison["html"])
    assert "scratch AdamW lr 1e-3, wd 1e-4, cosine (warmup 1 ep, min 0), batch 128, 3 epochs" in cells
    assert "scratch SGD lr 0.03, momentum 0.9, cosine (warmup 1 ep, min 0), batch 64, 4 epochs" in cells
    assert "scratch RMSprop lr 1e-3, constant, batch 128, 3 epochs" in cells


def test_a_weight_decay_sweep_with_zero_gets_a_symlog_axis_beside_the_lr_figure(optimizer_comparison):
    tags = figure_tags(optimizer_comparison["html"])
    assert tags["weight_decay"] == ("adamw", "symlog scale: linear from 0 to 0.0001, log beyond")
    assert set(tags["lr"][0].split(", ")) == {"sgd", "momentum", "rmsprop"} and tags["lr"][1] == "log scale"


def test_the_schedule_figure_shows_the_recorded_lr_of_each_selected_model(optimizer_comparison):
    params, layout, metrics = (optimizer_comparison[key] for key in ("params", "layout", "metrics"))
    assert '<img alt="learning rate against step" src="data:image/png;base64,' in optimizer_comparison["html"]
    selected = [family["selected"] for family in metrics["families"].values()]
    inputs = load_inputs(params, layout)
    section = schedule_section(params, inputs, selected, figures.model_colours(selected))
    assert section["missing"] == [] and section["image"].startswith("data:image/png;base64,")
    for model in selected:
        curve = _lr_curve(inputs, params.mapping["models"][model], model)
        recorded = json.loads(layout.train_report(model, 0).read_text())["lr_curve"]
        assert curve.step.tolist() == recorded["step"] and curve.lr.tolist() == recorded["lr"]
        assert curve.base_lr == params.mapping["models"][model]["lr"]
    cosine = _lr_curve(inputs, params.mapping["models"]["sgd"], "sgd")
    assert cosine.lr[0] < cosine.lr.max() == pytest.approx(0.3) and cosine.lr[-1] == pytest.approx(0.0)


def test_no_schedule_figure_when_every_selected_model_keeps_a_constant_lr(optimizer_sweep):
    assert 'id="lr-schedule"' not in optimizer_sweep["html"]
    assert "learning rate against step" not in optimizer_sweep["html"]


def test_a_swept_key_inside_the_schedule_is_named_dotted_as_sweep_writes_it():
    runs = {"adamw": OPTIMIZER_BASES["adamw"],
            **sweep_entries("adamw", OPTIMIZER_BASES, [parse_setting("schedule.warmup_epochs=0,2"),
                                                       parse_setting("lr=1e-3,3e-3")])}
    assert families.swept_keys(runs, list(runs)) == ["lr", "schedule.warmup_epochs"]


def test_the_optimizers_preset_is_six_scratch_families_on_warmup_and_cosine_with_two_seeds():
    params = load_params(REPO_ROOT / "workflow" / "presets" / "optimizers.yaml")
    runs = params.mapping["models"]
    families_of = params.families()
    assert {runs[base]["optimizer"] for base in families_of} == {"sgd", "adam", "adamw", "rmsprop"}
    sgd_kinds = {(runs[base]["momentum"], runs[base]["nesterov"]) for base in families_of
                 if runs[base]["optimizer"] == "sgd"}
    assert len(families_of) == 6 and sgd_kinds == {(0.0, False), (0.9, False), (0.9, True)}
    assert list(params.seeds) == [0, 1] and params.data.n_train < 55_000
    for base, members in families_of.items():
        assert {runs[member]["impl"] for member in members} == {"scratch"}
        assert all(runs[member]["schedule"]["name"] == "cosine" and runs[member]["schedule"]["warmup_epochs"] > 0
                   for member in members)
        assert families.swept_keys(runs, members) == ["lr"]
        grid = sorted(runs[member]["lr"] for member in members)
        assert len(grid) == 5 and grid[2] == runs[base]["lr"], base  # each base at the centre of its own grid


def test_a_collapsed_member_does_not_flatten_the_accuracy_axis_and_is_marked_below_it():
    series = [figures.SensitivitySeries("sgd", [point(0.3, [0.966]), point(1.0, [0.976], True), point(10.0, [0.106])],
                                        "#1f77b4"),
              figures.SensitivitySeries("adam", [point(1e-3, [0.964]), point(1e-2, [0.975], True)], "#ff7f0e")]
    axes = figures.sensitivity_plot(series, "lr").axes[0]
    assert axes.get_ylim()[0] == pytest.approx(97.6 - figures.ZOOM_POINTS)
    marks = [text.get_text() for text in axes.texts]
    assert marks == ["11%"]
    assert any(text.get_text().startswith("below the axis") for text in axes.get_legend().get_texts())
    kept = figures.sensitivity_plot(series[1:], "lr").axes[0]
    assert len(kept.texts) == 0 and kept.get_ylim()[0] < 96.4
