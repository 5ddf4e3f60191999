"""The report stage: metrics.json from the eval records, the HTML built from it, the plot data, the errors."""

from __future__ import annotations

import base64
import io
import json
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_report import write_params, write_results

from mnistbench import cli
from mnistbench.errors import MnistbenchError
from mnistbench.params import load_params
from mnistbench.report import aggregate, article, formatting, provenance_view
from mnistbench.report.context import SUMMARY_TABLE_COLUMNS, lookup
from mnistbench.report.render import run_report

REPO_ROOT = Path(__file__).resolve().parents[1]

SECTIONS = ("1. Summary table", "2. Is the difference real?", "3. Accuracy per model", "4. Learning curves",
            "5. Confusion matrices", "6. The most confidently wrong", "7. Time", "8. Runs that diverged",
            "9. Provenance", "10. Reference")
DIVERGED = frozenset({("scratch_sgd", 1)})


class CellCollector(HTMLParser):
    """Collects (data-key, data-value, text, classes) of every element that carries a data-key."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "data-key" in attributes:
            self._open = {"key": attributes["data-key"], "value": attributes["data-value"],
                          "class": attributes.get("class") or "", "text": ""}

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == "td":
            self.cells.append(self._open)
            self._open = None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One report over 3 models x 3 seeds with scratch_sgd seed 1 diverged."""
    root = tmp_path_factory.mktemp("report")
    params = write_params(root)
    layout = write_results(root, params, DIVERGED)
    run_report(params, layout)
    return {"params": params, "layout": layout, "html": layout.report_html.read_text(encoding="utf-8"),
            "metrics": json.loads(layout.metrics_json.read_text(encoding="utf-8"))}


def eval_records(layout, params) -> dict[str, list[dict]]:
    return {model: [json.loads(layout.eval_report(model, seed).read_text()) for seed in params.seeds]
            for model in params.models}


def test_metrics_json_equals_recomputation_from_eval_reports(built):
    params, layout, metrics = built["params"], built["layout"], built["metrics"]
    for model, records in eval_records(layout, params).items():
        accuracies = [record["test_accuracy"] for record in records if record["status"] == "ok"]
        summary = metrics["models"][model]["test_accuracy"]
        assert summary["per_seed"] == accuracies
        assert summary["mean"] == pytest.approx(statistics.mean(accuracies), abs=1e-12)
        assert summary["std"] == pytest.approx(statistics.stdev(accuracies), abs=1e-12)
        half_width = stats.t.ppf(0.975, len(accuracies) - 1) * statistics.stdev(accuracies) / len(accuracies) ** 0.5
        assert summary["ci95"] == pytest.approx([summary["mean"] - half_width, summary["mean"] + half_width])
        losses = [record["test_loss"] for record in records if record["status"] == "ok"]
        assert metrics["models"][model]["test_loss"]["mean"] == pytest.approx(statistics.mean(losses))


def test_metrics_json_train_seconds_equal_the_train_reports(built):
    params, layout, metrics = built["params"], built["layout"], built["metrics"]
    for model in params.models:
        records = [json.loads(layout.train_report(model, seed).read_text()) for seed in params.seeds]
        seconds = [record["train_seconds"] for record in records if record["status"] == "ok"]
        assert metrics["models"][model]["train_seconds"]["per_seed"] == seconds
    fastest = min(entry["train_seconds"]["mean"] for entry in metrics["models"].values())
    for entry in metrics["models"].values():
        assert entry["relative_train_time"] == pytest.approx(entry["train_seconds"]["mean"] / fastest)


def test_comparisons_are_seedwise_accuracy_differences(built):
    params, layout, metrics = built["params"], built["layout"], built["metrics"]
    records = eval_records(layout, params)
    assert len(metrics["comparisons"]) == 3
    for pair in metrics["comparisons"]:
        a_runs, b_runs = records[pair["a"]], records[pair["b"]]
        differences = [a["test_accuracy"] - b["test_accuracy"] for a, b in zip(a_runs, b_runs, strict=True)
                       if a["status"] == "ok" and b["status"] == "ok"]
        assert pair["per_seed"] == pytest.approx(differences)
        assert pair["diff_mean"] == pytest.approx(np.mean(differences))
        assert pair["p"] == pytest.approx(stats.ttest_rel(
            [a["test_accuracy"] for a, b in zip(a_runs, b_runs, strict=True) if a["status"] == b["status"] == "ok"],
            [b["test_accuracy"] for a, b in zip(a_runs, b_runs, strict=True) if a["status"] == b["status"] == "ok"],
        ).pvalue)


@pytest.mark.parametrize("n", [2, 3, 5, 30])
def test_t_intervals_and_p_values_are_those_of_scipy_stats(n):
    """aggregate takes t from scipy.special to spare the report job scipy.stats' import: the same numbers."""
    rng = np.random.default_rng(n)
    for center in (-0.02, 0.0, 0.004, 0.97):
        values = center + rng.normal(0, 0.003, n)
        expected = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values))
        assert aggregate.t_interval(values) == [float(bound) for bound in expected]  # bit for bit
        assert aggregate.two_sided_p_value(values) == pytest.approx(stats.ttest_1samp(values, 0.0).pvalue,
                                                                    rel=1e-13, abs=0)
    assert aggregate.t_interval(np.full(n, 0.5)) == [0.5, 0.5]


def test_html_summary_numbers_equal_metrics_json(built):
    collector = CellCollector()
    collector.feed(built["html"])
    summary_cells = {cell["key"]: cell for cell in collector.cells if cell["key"].startswith("models.")}
    assert len(summary_cells) == len(built["params"].models) * len(SUMMARY_TABLE_COLUMNS)
    for model in built["params"].models:
        for _, key, formatter, _ in SUMMARY_TABLE_COLUMNS:
            cell = summary_cells[f"models.{model}.{key}"]
            expected = lookup(built["metrics"], f"models.{model}.{key}")
            assert json.loads(cell["value"]) == expected
            assert cell["text"].strip() == formatter(expected)


def test_best_value_of_each_column_is_marked(built):
    collector = CellCollector()
    collector.feed(built["html"])
    models = built["metrics"]["models"]
    best_accuracy = max(models, key=lambda name: models[name]["test_accuracy"]["mean"])
    marked = [cell["key"] for cell in collector.cells if "best" in cell["class"].split()]
    assert f"models.{best_accuracy}.test_accuracy.mean" in marked
    assert sum(key.endswith("test_accuracy.mean") for key in marked) == 1


def test_html_references_no_external_url(built):
    html = built["html"]
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.IGNORECASE)
    references += re.findall(r"url\(([^)]*)\)", html, flags=re.IGNORECASE)
    embedded = [ref for ref in references if ref.startswith("data:")]
    others = [ref for ref in references if not ref.startswith("data:")]
    assert embedded, "expected at least the embedded images"
    # A base64 payload may spell "http" by chance: embedded references must be inline PNG data, nothing else.
    assert all(ref.startswith("data:image/png;base64,") for ref in embedded)
    assert [ref for ref in others if not ref.startswith("#")] == []
    assert not [ref for ref in others if "http" in ref.lower() or ref.startswith("//")]
    assert "<script" not in html.lower()
    assert "@import" not in html and "<link" not in html.lower()


def test_every_embedded_image_decodes_as_png(built):
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', built["html"])
    assert len(uris) >= 3 + len(built["params"].models)  # accuracy, curves, F1; worst mistakes per model
    for encoded in uris:
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(encoded, validate=True)), format="png")
        assert image.ndim == 3 and image.shape[0] > 20 and image.shape[1] > 20


def confusion_tables_in(html: str, model: str) -> list[list[list[str]]]:
    """The cell texts of `model`'s two confusion tables (counts, % of each true digit): 10 rows of 10 each."""
    group = re.search(rf'<div class="confusion" role="group" aria-label="confusion matrix of {model}">(.*?)</div>',
                      html, flags=re.DOTALL).group(1)
    return [[re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr><th>\d</th>(.*?)</tr>", table)]
            for table in re.findall(r"<table.*?</table>", group, flags=re.DOTALL)]


def test_confusion_tables_show_the_eval_records_summed_over_ok_seeds(built):
    params, layout = built["params"], built["layout"]
    for model, records in eval_records(layout, params).items():
        ok = [record["confusion_matrix"] for record in records if record["status"] == "ok"]
        summed = np.sum(ok, axis=0)
        counts, shares = confusion_tables_in(built["html"], model)
        assert counts == [[str(value) if value else "" for value in row] for row in summed.tolist()]
        recall = summed / summed.sum(axis=1, keepdims=True)
        assert [[float(text) if text else 0.0 for text in row] for row in shares] == pytest.approx(
            100 * recall, abs=0.5)


def test_every_section_is_present_in_order(built):
    headings = re.findall(r"<h2>(.*?)</h2>", built["html"])
    assert len(headings) == len(SECTIONS)
    for heading, expected in zip(headings, SECTIONS, strict=True):
        assert heading.startswith(expected)


def test_diverged_run_is_excluded_from_metrics_and_flagged_in_red(built):
    entry = built["metrics"]["models"]["scratch_sgd"]
    assert entry["n_seeds_ok"] == 2 and entry["n_diverged"] == 1
    assert entry["seeds_ok"] == [0, 2]
    assert entry["diverged"] == [{"seed": 1, "epoch": 2}]
    rows = re.findall(r'<tr class="diverged">(.*?)</tr>', built["html"], flags=re.DOTALL)
    assert len(rows) == 1
    assert re.findall(r"<td[^>]*>(.*?)</td>", rows[0]) == ["scratch_sgd", "1", "2"]
    assert ".diverged" in built["html"] and "#b00020" in built["html"]


def test_plot_data_files_for_dvc(built):
    layout, params = built["layout"], built["params"]
    curves = pd.read_csv(layout.plots_dir / "learning_curves.csv")
    assert list(curves.columns) == ["model", "seed", "status", "epoch", "train_loss", "val_loss", "val_accuracy",
                                    "seconds"]
    expected_rows = sum(run.epochs for run in params.models.values()) * len(params.seeds) - (4 - 2)
    assert len(curves) == expected_rows
    for model, run in params.models.items():
        model_curve = pd.read_csv(layout.plots_dir / "curves" / f"{model}.csv")
        assert list(model_curve.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy"]
        assert model_curve["epoch"].tolist() == list(range(1, run.epochs + 1))
        confusion = pd.read_csv(layout.plots_dir / "confusion" / f"{model}.csv")
        n_ok = built["metrics"]["models"][model]["n_seeds_ok"]
        assert len(confusion) == n_ok * params.data.n_test
        assert list(confusion.columns) == ["actual", "predicted"]
    sgd = pd.read_csv(layout.plots_dir / "confusion" / "scratch_sgd.csv")
    matrix = pd.crosstab(sgd["actual"], sgd["predicted"]).reindex(index=range(10), columns=range(10), fill_value=0)
    records = [json.loads(layout.eval_report("scratch_sgd", seed).read_text()) for seed in (0, 2)]
    assert matrix.to_numpy().tolist() == np.sum([r["confusion_matrix"] for r in records], axis=0).tolist()


def test_plot_files_of_models_no_longer_in_params_are_removed(tmp_path):
    params = write_params(tmp_path)
    run_report(params, write_results(tmp_path, params))
    fewer = {name: run for name, run in params.mapping["models"].items() if name != "torch_adam"}
    params = write_params(tmp_path, models=fewer)
    layout = write_results(tmp_path, params)
    run_report(params, layout)
    assert sorted(path.name for path in (layout.plots_dir / "curves").iterdir()) == ["scratch_adam.csv",
                                                                                      "scratch_sgd.csv"]
    assert not (layout.plots_dir / "confusion" / "torch_adam.csv").exists()


def test_a_model_missing_from_the_defaults_is_one_difference_row():
    default = {"seeds": [0], "models": {"a": {"lr": 0.1, "epochs": 2}}}
    in_force = {"seeds": [0, 1], "models": {"a": {"lr": 0.2, "epochs": 2}, "b": {"lr": 0.3, "epochs": 5}}}
    rows = provenance_view.params_differences(in_force, default)
    assert [row["key"] for row in rows] == ["models.a.lr", "models.b", "seeds"]
    assert rows[1]["default"] == "(absent)" and "0.3" in rows[1]["in_force"]


def test_params_differing_from_defaults_are_listed(built):
    html = built["html"]
    differences = re.search(r'<table id="params-diff">(.*?)</table>', html, flags=re.DOTALL)
    assert differences is not None
    assert "<code>data.n_train</code>" in differences.group(1)
    assert "<code>network.hidden</code>" in differences.group(1)
    assert "<code>data.split</code>" not in differences.group(1)


def test_report_builds_when_every_seed_of_a_model_diverged(tmp_path):
    params = write_params(tmp_path)
    diverged = frozenset(("torch_adam", seed) for seed in params.seeds)
    layout = write_results(tmp_path, params, diverged)
    run_report(params, layout)
    metrics = json.loads(layout.metrics_json.read_text())
    assert metrics["models"]["torch_adam"]["test_accuracy"]["mean"] is None
    assert metrics["models"]["torch_adam"]["n_diverged"] == 3
    pair = next(p for p in metrics["comparisons"] if "torch_adam" in (p["a"], p["b"]))
    assert pair["n_pairs"] == 0 and pair["verdict"] == "not available"
    assert layout.report_html.read_text().count('<tr class="diverged">') == 3


def test_one_seed_gives_no_interval_and_says_so(tmp_path):
    params = write_params(tmp_path, seeds=(4,))
    layout = write_results(tmp_path, params)
    run_report(params, layout)
    metrics = json.loads(layout.metrics_json.read_text())
    assert all(entry["test_accuracy"]["ci95"] is None for entry in metrics["models"].values())
    assert all(pair["verdict"] == "not available" for pair in metrics["comparisons"])
    assert "only 1 paired seed" in layout.report_html.read_text()


def test_missing_eval_report_is_a_one_line_error_naming_it(tmp_path):
    params = write_params(tmp_path)
    layout = write_results(tmp_path, params)
    missing = layout.eval_report("scratch_adam", 2)
    missing.unlink()
    with pytest.raises(MnistbenchError, match=re.escape(str(missing))):
        run_report(params, layout)
    assert not layout.report_html.exists() and not layout.metrics_json.exists()


def test_missing_input_through_the_cli_exits_2_without_traceback(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    params = write_params(Path("."))
    layout = write_results(Path("."), params)
    layout.raw_npz.unlink()
    assert cli.main(["--params", "params.yaml", "--quiet", "report"]) == 2
    error = capfd.readouterr().err
    assert "mnist.npz is missing" in error and "Traceback" not in error


def test_article_preset_is_valid_and_is_the_article_recipe():
    params = load_params(REPO_ROOT / "workflow" / "presets" / "article.yaml")
    assert article.is_article_data(params)
    assert params.data.n_val == 0 and params.data.normalize == "unit"
    for recipe in article.ARTICLE_RECIPES:
        assert sum(recipe.matches(run) for run in params.models.values()) == 1, recipe.label


def test_article_preset_report_shows_ours_beside_the_article(tmp_path):
    preset = load_params(REPO_ROOT / "workflow" / "presets" / "article.yaml")
    models = {name: run | {"epochs": 2} for name, run in preset.mapping["models"].items()}
    params = write_params(tmp_path, data=preset.mapping["data"], models=models)
    layout = write_results(tmp_path, params)
    run_report(params, layout)  # epochs differ from the article's: no recipe matches
    table = re.search(r'<table id="reference-table">(.*?)</table>', layout.report_html.read_text(), re.DOTALL)
    assert "no model in the params has this recipe" in table.group(1)
    params = write_params(tmp_path, data=preset.mapping["data"], models=preset.mapping["models"])
    layout = write_results(tmp_path, params)
    run_report(params, layout)
    table = re.search(r'<table id="reference-table">(.*?)</table>', layout.report_html.read_text(), re.DOTALL)
    metrics = json.loads(layout.metrics_json.read_text())
    for name, entry in metrics["models"].items():
        assert f"{100 * entry['test_accuracy']['mean']:.2f}%" in table.group(1), name
    assert "86.3%" in table.group(1) and "88.2%, 89.7%" in table.group(1) and "1.90 s" in table.group(1)


def test_default_data_shows_the_article_figures_with_a_note(built):
    table = re.search(r'<table id="reference-table">(.*?)</table>', built["html"], re.DOTALL).group(1)
    assert "90.5%" in table and "72.94 s" in table
    assert "Our model" not in table
    assert "did <b>not</b> use the article's data recipe" in built["html"]


@pytest.mark.parametrize(("value", "text"), [(0.97123, "97.12%"), (None, "n/a"), (float("nan"), "n/a")])
def test_percent_formatting(value, text):
    assert formatting.percent(value) == text
