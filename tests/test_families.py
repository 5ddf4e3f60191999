"""Families at sweep scale: selection on validation, Holm-adjusted comparisons, a short summary, a report that
scales, `mnistbench sweep`, time to target. Synthetic records only: no training."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import browser
import pandas as pd
import pytest
import yaml
from synthetic_report import DATA, EVALUATE, MODELS, NETWORK, write_params, write_results
from synthetic_report import sweep_models as synthetic_sweep

from mnistbench.errors import MnistbenchError
from mnistbench.evaluation import time_to_target
from mnistbench.params import load_params
from mnistbench.report import families
from mnistbench.report.render import run_report
from mnistbench.sweep import run_clear, run_sweep

REPO_ROOT = Path(__file__).resolve().parents[1]
WILDCARD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def run_rows(model: str, val: list[float | None], test: list[float], status: list[str] | None = None) -> list[dict]:
    status = status or ["ok"] * len(val)
    return [{"model": model, "seed": seed, "status": status[seed], "val_accuracy": val[seed],
             "test_accuracy": test[seed], "diverged_epoch": None if status[seed] == "ok" else 2}
            for seed in range(len(val))]


def select(rows: list[dict], lrs: dict[str, float]) -> dict:
    table = pd.DataFrame(rows)
    runs = {model: {"lr": lr, "family": "f"} for model, lr in lrs.items()}
    return families.families_document(table, {"f": list(lrs)}, runs)["f"]


def test_selection_uses_validation_even_when_another_member_is_best_on_test():
    rows = (run_rows("a", [0.95, 0.96, 0.97], [0.99, 0.99, 0.99])
            + run_rows("b", [0.97, 0.97, 0.98], [0.90, 0.91, 0.92]))
    family = select(rows, {"a": 0.01, "b": 0.001})
    assert family["selected"] == "b" and family["selected_by"] == "val_accuracy"
    assert family["runner_up"] == "a"
    assert family["val_accuracy"] == pytest.approx(0.97 + 0.98 / 3 - 0.97 / 3)


def test_ties_go_to_the_smaller_learning_rate_then_to_the_name():
    rows = run_rows("big", [0.9, 0.8], [0.5, 0.5]) + run_rows("small", [0.8, 0.9], [0.4, 0.4])
    assert select(rows, {"big": 0.1, "small": 0.01})["selected"] == "small"
    rows = run_rows("b", [0.9, 0.8], [0.5, 0.5]) + run_rows("a", [0.8, 0.9], [0.4, 0.4])
    assert select(rows, {"b": 0.01, "a": 0.01})["selected"] == "a"


def test_a_member_with_a_diverged_seed_is_not_selected_while_another_has_none():
    rows = (run_rows("risky", [0.99, None], [0.99, 0.1], ["ok", "diverged"])
            + run_rows("steady", [0.90, 0.91], [0.9, 0.9]))
    assert select(rows, {"risky": 0.1, "steady": 0.01})["selected"] == "steady"
    rows = (run_rows("risky", [0.99, None], [0.99, 0.1], ["ok", "diverged"])
            + run_rows("worse", [0.5, None], [0.5, 0.1], ["ok", "diverged"]))
    assert select(rows, {"risky": 0.1, "worse": 0.01})["selected"] == "risky"


def test_holm_adjustment_equals_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert families.holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert families.holm_adjust([0.5, None, 0.9]) == [1.0, None, 1.0]


def test_holm_adjustment_is_monotone_and_never_below_the_raw_p_value():
    raw = [0.001, 0.2, 0.03, 0.04, 0.5, 0.0004, 0.07]
    adjusted = families.holm_adjust(raw)
    order = sorted(range(len(raw)), key=raw.__getitem__)
    assert all(adjusted[i] <= adjusted[j] for i, j in zip(order, order[1:], strict=False))
    assert all(a >= p for a, p in zip(adjusted, raw, strict=True))


def test_several_members_without_validation_rows_is_a_one_line_error(tmp_path):
    models, _ = synthetic_sweep(3, ("scratch_adam",))
    data = DATA | {"n_val": 0}
    with pytest.raises(MnistbenchError, match=r"data.n_val = 0 but family 'scratch_adam' has 3 members") as error:
        write_params(tmp_path, data=data, models=models)
    assert "\n" not in str(error.value)


def test_time_to_target_is_the_first_epoch_reaching_it_with_seconds_up_to_its_end():
    history = [{"epoch": 1, "val_accuracy": 0.90, "seconds": 2.0}, {"epoch": 2, "val_accuracy": 0.97, "seconds": 3.0},
               {"epoch": 3, "val_accuracy": 0.99, "seconds": 4.0}]
    assert time_to_target(history, 0.97) == {"target": 0.97, "epoch": 2, "seconds": 5.0}
    assert time_to_target(history, 0.995) == {"target": 0.995, "epoch": None, "seconds": None}
    assert time_to_target([{"epoch": 1, "val_accuracy": None, "seconds": 1.0}], 0.5)["epoch"] is None


def build_sweep(root: Path, n_lrs: int, bases: tuple[str, ...]) -> dict:
    models, skill = synthetic_sweep(n_lrs, bases)
    data = {"source": "fixture.npz", "split": "official", "n_train": 500, "n_val": 100, "n_test": 10_000,
            "normalize": "unit"}
    params = write_params(root, seeds=(0, 1, 2), data=data, models=models)
    top = max(name for name in models if models[name]["optimizer"] == "sgd")
    layout = write_results(root, params, frozenset({(top, 1)}), skill=skill)
    start = time.perf_counter()
    run_report(params, layout)
    return {"params": params, "layout": layout, "seconds": time.perf_counter() - start,
            "html": layout.report_html.read_text(encoding="utf-8"),
            "metrics": json.loads(layout.metrics_json.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def sweep16(tmp_path_factory) -> dict:
    return build_sweep(tmp_path_factory.mktemp("sweep16"), 8, ("scratch_sgd", "scratch_adam"))


@pytest.fixture(scope="module")
def sweep64(tmp_path_factory) -> dict:
    return build_sweep(tmp_path_factory.mktemp("sweep64"), 16, ("scratch_sgd", "scratch_adam", "torch_adam",
                                                                  "torch_sgd"))


def independent_selection(layout, params) -> dict[str, str]:
    """Argmax of mean final validation accuracy per family, read straight from reports/train (no diverged seed)."""
    best: dict[str, tuple] = {}
    for model, run in params.mapping["models"].items():
        records = [json.loads(layout.train_report(model, seed).read_text()) for seed in params.seeds]
        if any(record["status"] != "ok" for record in records):
            continue
        mean = sum(record["history"][-1]["val_accuracy"] for record in records) / len(records)
        family = run.get("family", model)
        if family not in best or (-mean, run["lr"], model) < best[family][0]:
            best[family] = ((-mean, run["lr"], model), model)
    return {family: model for family, (_, model) in best.items()}


@pytest.mark.parametrize("built", ["sweep16", "sweep64"])
def test_selected_members_equal_an_independent_argmax_of_validation_accuracy(built, request):
    built = request.getfixturevalue(built)
    selected = {name: entry["selected"] for name, entry in built["metrics"]["families"].items()}
    assert selected == independent_selection(built["layout"], built["params"])


@pytest.mark.parametrize(("built", "limit_mb"), [("sweep16", 1.5), ("sweep64", 2.5)])
def test_report_size_is_bounded_and_the_summary_box_short(built, limit_mb, request):
    built = request.getfixturevalue(built)
    assert built["layout"].report_html.stat().st_size <= limit_mb * 1e6
    box = re.search(r'<ul class="headline">(.*?)</ul>', built["html"], flags=re.DOTALL).group(1)
    assert 2 <= box.count("<li") <= 8


def test_comparisons_pair_the_selected_members_with_holm_adjusted_p_values(sweep64):
    metrics = sweep64["metrics"]
    selected = {entry["selected"] for entry in metrics["families"].values()}
    assert len(metrics["comparisons"]) == 6 and metrics["adjustment"] == "holm"
    raw = [row["p"] for row in metrics["comparisons"]]
    assert [row["p_adjusted"] for row in metrics["comparisons"]] == families.holm_adjust(raw)
    for row in metrics["comparisons"]:
        assert {row["a"], row["b"]} <= selected
        assert set(row) >= {"a", "b", "diff_mean", "ci95", "p", "p_adjusted", "n_pairs"}


def test_sweep_report_has_the_sensitivity_figure_a_collapsed_pairwise_table_and_one_line_per_model(sweep64):
    html = sweep64["html"]
    assert re.search(r'<img alt="sensitivity to lr: [^"]*scratch_adam[^"]*scratch_sgd', html) or \
        re.search(r'<img alt="sensitivity to lr: [^"]*scratch_sgd[^"]*scratch_adam', html)
    assert "<details" in html and "<details id=\"difference-details\" open" not in html
    rows = re.search(r'<table id="models-table"[^>]*>(.*?)</table>', html, flags=re.DOTALL).group(1)
    assert rows.count("<tr") == 1 + 64
    assert html.count('aria-label="confusion matrix of') == 4 and html.count('alt="worst mistakes of') == 4
    assert "<script" not in html.lower()


def test_summary_json_has_a_few_short_numbers_per_model(sweep16):
    summary = json.loads(sweep16["layout"].summary_json.read_text())
    metrics = sweep16["metrics"]
    assert set(summary) == set(metrics["models"])
    for model, entry in summary.items():
        assert set(entry) == {"acc", "lo", "hi", "val", "s_ep", "ttt", "div"}
        assert entry["acc"] == pytest.approx(100 * metrics["models"][model]["test_accuracy"]["mean"], abs=0.005)


def test_default_three_models_show_no_family_section(tmp_path):
    params = write_params(tmp_path)
    run_report(params, write_results(tmp_path, params))
    html = (tmp_path / "reports" / "report.html").read_text()
    assert 'id="families"' not in html and "sensitivity" not in html.lower()
    assert [entry["selected"] for entry in json.loads((tmp_path / "reports" / "metrics.json").read_text())[
        "families"].values()] == list(MODELS)


def test_sweep_then_clear_gives_the_original_file_byte_for_byte(tmp_path):
    path = tmp_path / "params.yaml"
    original = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    added = run_sweep(path, "scratch_adam", ["lr=1e-4,3e-4,1e-3,3e-3,1e-2", "batch_size=32,128"])
    assert len(added) == 9  # 10 combinations, less lr 1e-3 with batch 128: the base entry itself
    assert all(WILDCARD.fullmatch(name) for name in added)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(original.split("\nevaluate:")[0].rsplit("  torch_adam:", 1)[0])
    assert "# Every knob" in text and "# unit: x/255" in text
    params = load_params(path)
    assert params.families()["scratch_adam"] == ["scratch_adam", *added]
    assert params.models["scratch_adam__lr_0p0001__batch_size_32"].lr == pytest.approx(1e-4)
    assert params.models["scratch_adam__lr_0p0001__batch_size_32"].batch_size == 32
    run_sweep(path, "scratch_adam", ["lr=1e-2"])  # a new sweep of the same base replaces the old block
    assert list(load_params(path).models) == ["scratch_sgd", "scratch_adam", "torch_adam", "scratch_adam__lr_0p01"]
    assert run_clear(path, "scratch_adam") == ["scratch_adam__lr_0p01"]
    assert path.read_text(encoding="utf-8") == original


def test_two_families_swept_one_after_the_other_clear_independently(tmp_path):
    path = tmp_path / "params.yaml"
    original = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    sgd = run_sweep(path, "scratch_sgd", ["lr=0.01,0.3"])
    both = path.read_text(encoding="utf-8")
    adam = run_sweep(path, "scratch_adam", ["lr=1e-4,1e-2"])
    assert run_clear(path, "scratch_sgd") == sgd
    assert set(load_params(path).models) == {"scratch_sgd", "scratch_adam", "torch_adam", *adam}
    assert run_clear(path, "scratch_adam") == adam
    assert path.read_text(encoding="utf-8") == original
    path.write_text(both, encoding="utf-8")
    run_sweep(path, "scratch_adam", ["lr=1e-4,1e-2"])
    assert run_clear(path, "scratch_adam") == adam
    assert path.read_text(encoding="utf-8") == both


def test_sweep_round_trips_a_file_whose_models_end_it_without_a_newline(tmp_path):
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump({"data": DATA, "network": NETWORK, "seeds": [0], "evaluate": EVALUATE,
                           "models": {"scratch_sgd": MODELS["scratch_sgd"]}}, sort_keys=False).rstrip("\n")
    path.write_text(text, encoding="utf-8")
    run_sweep(path, "scratch_sgd", ["lr=0.01,1e-5"])
    assert sorted(load_params(path).models) == ["scratch_sgd", "scratch_sgd__lr_0p01", "scratch_sgd__lr_1em05"]
    run_clear(path, "scratch_sgd")
    assert path.read_text(encoding="utf-8") == text


def test_a_sweep_that_breaks_the_params_changes_nothing(tmp_path):
    path = tmp_path / "params.yaml"
    original = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    with pytest.raises(MnistbenchError, match=r"lr = -1: must be > 0"):
        run_sweep(path, "scratch_adam", ["lr=-1"])
    with pytest.raises(MnistbenchError, match="no entry 'nope'"):
        run_sweep(path, "nope", ["lr=1"])
    assert path.read_text(encoding="utf-8") == original


@pytest.mark.browser
def test_sweep_report_loads_in_headless_chromium_with_no_request(sweep64, tmp_path):
    if browser.CHROMIUM is None:
        pytest.skip(browser.NO_CHROMIUM)
    page = browser.load_in_chromium(sweep64["layout"].report_html, screenshot=False)
    own = sweep64["layout"].report_html.resolve().as_uri()
    assert own in page["requests"], "the page load itself should be seen, or the check proves nothing"
    assert [url for url in page["requests"] if url != own and not url.startswith("data:")] == []
    assert page["errors"] == []
    assert page["broken"] == 0 and any("Families" in heading for heading in page["headings"])


def test_the_same_gap_on_every_seed_is_not_a_tiny_p_value_from_float_rounding():
    """37 more test images right on both seeds is the same gap: accuracies 9026/10000 - 8989/10000 and
    9000/10000 - 8963/10000 differ in their last bit, which must not become a t test with a near-zero spread."""
    from mnistbench.report.aggregate import paired_difference_from_pivot

    accuracy = pd.DataFrame({"a": [9026 / 10_000, 9000 / 10_000], "b": [8989 / 10_000, 8963 / 10_000]}, index=[0, 1])
    assert accuracy["a"][0] - accuracy["b"][0] != accuracy["a"][1] - accuracy["b"][1]  # the rounding is there
    pair = paired_difference_from_pivot(accuracy, "a", "b")
    assert pair["p_value"] is None and pair["std"] == 0.0
    assert pair["per_seed"] == [0.0037, 0.0037] and pair["mean"] == 0.0037
