"""The `report` stage: read every run's results, write reports/metrics.json, the DVC plot data and report.html.

Outputs (all written atomically):
    reports/metrics.json                      aggregate statistics (documents.metrics_document)
    reports/summary.json                      the compact per-model numbers DVC shows (documents.summary_document)
    reports/plots/learning_curves.csv         long: model, seed, status, epoch, train_loss, val_loss, val_accuracy,
                                              seconds (every run, every epoch)
    reports/plots/curves/<model>.csv          epoch, train_loss, val_loss, val_accuracy: means over ok seeds
    reports/plots/confusion/<model>.csv       actual, predicted: one row per test image, ok seeds pooled (each
                                              family's selected model, if it has an ok run; other files are removed)
    reports/report.html                       the self-contained report (templates/report.html.j2)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from mnistbench.io import atomic_path, write_json
from mnistbench.params import Params
from mnistbench.paths import Layout
from mnistbench.report import aggregate, documents
from mnistbench.report.context import build_context
from mnistbench.report.inputs import ReportInputs, load_inputs

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render_html(context: dict[str, Any]) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("report.html.j2").render(**context)


def write_csv(target: Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as temp:
        frame.to_csv(temp, index=False)


def confusion_rows(matrix: np.ndarray) -> pd.DataFrame:
    """A (10, 10) count matrix (rows = true class) expanded to one (actual, predicted) row per image."""
    actual, predicted = np.nonzero(matrix >= 0)
    counts = matrix[actual, predicted]
    return pd.DataFrame({"actual": np.repeat(actual, counts), "predicted": np.repeat(predicted, counts)})


def remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete folder/*.csv whose name is not in `keep` (files of models no longer in the params)."""
    for path in folder.glob("*.csv") if folder.is_dir() else []:
        if path.name not in keep:
            path.unlink()


def write_plot_data(layout: Layout, inputs: ReportInputs, curves: pd.DataFrame, models: list[str],
                    selected: list[str]) -> None:
    """The files `dvc plots` draws (see the module docstring), and no others: curves of every model, confusion
    rows of each family's selected model (one row per test image: the heavy part)."""
    written: set[Path] = set()
    write_csv(layout.plots_dir / "learning_curves.csv", curves)
    means = aggregate.mean_curves(curves)
    for model in models:
        model_means = means[means["model"] == model]
        columns = {f"{value}_mean": value for value in ("train_loss", "val_loss", "val_accuracy")}
        write_csv(layout.plots_dir / "curves" / f"{model}.csv",
                  model_means[["epoch", *columns]].rename(columns=columns))
        written.add(layout.plots_dir / "curves" / f"{model}.csv")
        matrix = aggregate.summed_confusion(inputs, model) if model in selected else None
        if matrix is not None:
            write_csv(layout.plots_dir / "confusion" / f"{model}.csv", confusion_rows(matrix))
            written.add(layout.plots_dir / "confusion" / f"{model}.csv")
    for folder in ("curves", "confusion"):
        remove_stale(layout.plots_dir / folder, {path.name for path in written if path.parent.name == folder})


def run_report(params: Params, layout: Layout) -> None:
    """The `report` stage: every input is read (a missing one stops with its name) before anything is written."""
    inputs = load_inputs(params, layout)
    models = list(params.models)
    table = aggregate.run_table(inputs)
    metrics = documents.metrics_document(table, params.mapping["models"], params.evaluate.target_accuracy)
    curves = aggregate.learning_curves(inputs)
    html = render_html(build_context(params, inputs, table, metrics, curves))
    write_json(layout.metrics_json, metrics)
    write_json(layout.summary_json, documents.summary_document(metrics))
    write_plot_data(layout, inputs, curves, models, [family["selected"] for family in metrics["families"].values()])
    with atomic_path(layout.report_html) as temp:
        temp.write_text(html, encoding="utf-8")
    diverged = int((table["status"] != "ok").sum())
    log.info("report: %d runs (%d diverged) -> %s, %s", len(table), diverged, layout.metrics_json, layout.report_html)
