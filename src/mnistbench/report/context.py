"""What the report template shows, section by section: plain data (strings, numbers, data URIs), no HTML.

Every number of the summary table carries the metrics.json key it comes from (`key`) and its exact value
(`value`), so the HTML can be checked against reports/metrics.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mnistbench.errors import MnistbenchError
from mnistbench.params import Params
from mnistbench.report import aggregate, article, figures
from mnistbench.report import formatting as fmt
from mnistbench.report.inputs import ReportInputs
from mnistbench.report.provenance_view import provenance_section

WORST_SHOWN = 8

# Summary columns: (header, metrics key inside a model entry, formatter, which value is best: max | min | None).
SUMMARY_COLUMNS: tuple[tuple[str, str, Callable[[Any], str], str | None], ...] = (
    ("Test accuracy (mean)", "test_accuracy.mean", fmt.percent, "max"),
    ("± std (points)", "test_accuracy.std", fmt.points, None),
    ("95% interval (%)", "test_accuracy.ci95", fmt.interval, None),
    ("Test loss", "test_loss.mean", fmt.loss, "min"),
    ("Train time", "train_seconds.mean", fmt.seconds, "min"),
    ("Time per epoch", "seconds_per_epoch.mean", fmt.seconds, "min"),
    ("Training images/s", "samples_per_second.mean", fmt.rate, "max"),
    ("Inference images/s", "inference_images_per_second.mean", fmt.rate, "max"),
    ("Train time vs fastest", "relative_train_time", fmt.ratio, "min"),
)


def lookup(document: dict[str, Any], dotted: str) -> Any:
    """document["a"]["b"] for dotted "a.b"."""
    value: Any = document
    for part in dotted.split("."):
        value = value[part]
    return value


def summary_section(params: Params, metrics: dict[str, Any]) -> dict[str, Any]:
    """Section 1: headers and one row per model; each cell {key, value, json, text, best}."""
    models = metrics["models"]
    rows = []
    for name, entry in models.items():
        cells = [_cell(f"models.{name}.{key}", lookup(entry, key), formatter) for _, key, formatter, _ in
                 SUMMARY_COLUMNS]
        per_seed = [fmt.percent(value) for value in entry["test_accuracy"]["per_seed"]]
        rows.append({"model": name, "recipe": _recipe(params, name), "cells": cells,
                     "per_seed": ", ".join(per_seed) or fmt.MISSING, "seeds_ok": entry["n_seeds_ok"],
                     "n_diverged": entry["n_diverged"]})
    for column, (_, _, _, best) in enumerate(SUMMARY_COLUMNS):
        _mark_best([row["cells"][column] for row in rows], best)
    return {"headers": [header for header, *_ in SUMMARY_COLUMNS], "rows": rows, "headline": _headline(models)}


def _cell(key: str, value: Any, formatter: Callable[[Any], str]) -> dict[str, Any]:
    return {"key": key, "value": value, "json": json.dumps(value), "text": formatter(value), "best": False}


def _mark_best(cells: list[dict[str, Any]], best: str | None) -> None:
    known = [cell for cell in cells if isinstance(cell["value"], int | float)]
    if best is None or len(known) < 2:
        return
    pick = max if best == "max" else min
    target = pick(cell["value"] for cell in known)
    for cell in known:
        cell["best"] = cell["value"] == target


def _recipe(params: Params, name: str) -> str:
    run = params.models[name]
    batch = "full batch" if run.batch_size == 0 else f"batch {run.batch_size}"
    extra = f", momentum {run.momentum}" if run.optimizer == "sgd" and run.momentum else ""
    return f"{run.impl} {run.optimizer}, lr {run.lr}{extra}, {batch}, {run.epochs} epochs"


def _headline(models: dict[str, Any]) -> list[str]:
    """Plain sentences: the most accurate model and the fastest to train."""
    accuracy = {name: entry["test_accuracy"]["mean"] for name, entry in models.items()
                if entry["test_accuracy"]["mean"] is not None}
    times = {name: entry["train_seconds"]["mean"] for name, entry in models.items()
             if entry["train_seconds"]["mean"] is not None}
    lines = []
    if accuracy:
        best = max(accuracy, key=accuracy.get)
        lines.append(f"Most accurate: {best} with {fmt.percent(accuracy[best])} test accuracy "
                     f"(mean of {models[best]['n_seeds_ok']} seed(s)).")
    if times:
        fastest = min(times, key=times.get)
        lines.append(f"Fastest to train: {fastest} in {fmt.seconds(times[fastest])} (mean per seed).")
    return lines


def comparison_section(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Section 2: one row per pair of models with formatted difference, interval and a plain verdict."""
    rows = []
    for pair in metrics["paired_differences"]:
        rows.append({**pair, "mean_text": fmt.points(pair["mean"], signed=True),
                     "ci_text": fmt.interval(pair["ci95"], signed=True),
                     "per_seed_text": ", ".join(fmt.points(value, signed=True) for value in pair["per_seed"]),
                     "p_text": "n/a" if pair["p_value"] is None else f"{pair['p_value']:.3g}",
                     "sentence": _verdict_sentence(pair)})
    return rows


# A paired gap this small (as a fraction, 0.1 points) is real for the seeds but of no practical weight.
TINY_GAP = 0.001


def _verdict_sentence(pair: dict[str, Any]) -> str:
    a, b, n = pair["a"], pair["b"], pair["n_pairs"]
    if pair["verdict"] == "not available":
        reason = "no seed where both runs succeeded" if n == 0 else f"only {n} paired seed"
        return f"{a} vs {b}: no interval ({reason}; an interval needs at least two)."
    winner, loser = (a, b) if pair["mean"] >= 0 else (b, a)
    gap = fmt.points(abs(pair["mean"]))
    if pair["verdict"] == "no clear difference":
        return (f"{winner} is {gap} points ahead of {loser} on average, but the 95% interval includes zero: "
                f"with {n} seeds this gap is within seed-to-seed noise.")
    sentence = (f"{winner} is {gap} points more accurate than {loser}; the 95% interval excludes zero, "
                f"so the difference is unlikely to be seed noise.")
    if abs(pair["mean"]) < TINY_GAP:
        sentence += (f" It is also tiny (under {fmt.points(TINY_GAP)} points): with the same initial weights and "
                     "batches, such a gap can come from float32 rounding alone.")
    return sentence


def confusion_section(inputs: ReportInputs, colours: dict[str, str]) -> dict[str, Any]:
    """Section 5: a confusion figure per model with an ok run, and the per-class F1 figure."""
    matrices = []
    for model in colours:
        matrix = aggregate.summed_confusion(inputs, model)
        if matrix is not None:
            matrices.append({"model": model, "total": int(matrix.sum()),
                             "image": figures.confusion_figure(matrix, model)})
    f1 = aggregate.per_class_f1(inputs)
    return {"matrices": matrices, "f1_image": figures.f1_figure(f1, colours) if not f1.empty else None}


def mistakes_section(inputs: ReportInputs, models: list[str]) -> list[dict[str, Any]]:
    """Section 6: per model, the most confidently wrong test images of its first ok seed."""
    panels = []
    for model in models:
        run = next((run for run in inputs.runs_of(model) if run.status == "ok"), None)
        recorded = (run.evaluation.get("worst_mistakes") or []) if run else []
        drawable = [mistake for mistake in recorded if mistake.get("dataset_index") is not None]
        mistakes = sorted(drawable, key=lambda mistake: -mistake["probability"])[:WORST_SHOWN]
        if not mistakes:
            continue
        indices = np.array([mistake["dataset_index"] for mistake in mistakes], dtype=np.int64)
        if indices.max() >= len(inputs.mnist_images) or indices.min() < 0:
            raise MnistbenchError(f"reports/eval/{model}/seed{run.seed}.json: worst_mistakes dataset_index "
                                  f"{int(indices.max())} is outside data/raw/mnist.npz "
                                  f"(0..{len(inputs.mnist_images) - 1})")
        captions = [f"true {m['label']}, said {m['predicted']}\n{100 * m['probability']:.1f}% sure" for m in mistakes]
        panels.append({"model": model, "seed": run.seed,
                       "image": figures.mistakes_figure(inputs.mnist_images[indices], captions)})
    return panels


def timing_section(table: pd.DataFrame, colours: dict[str, str]) -> dict[str, Any]:
    """Section 7: the timing figure and per model: device(s), threads, images/s, epochs (ok runs)."""
    rows = []
    for model in colours:
        runs = table[table["model"] == model]
        ok = runs[runs["status"] == "ok"]
        rows.append({
            "model": model,
            "device": ", ".join(sorted({str(value) for value in runs["device"].dropna()})) or fmt.MISSING,
            "threads": ", ".join(sorted({str(int(value)) for value in runs["threads"].dropna()})) or fmt.MISSING,
            "samples_per_second": fmt.rate(ok["samples_per_second"].mean() if len(ok) else None),
            "seconds_per_epoch": fmt.seconds(ok["seconds_per_epoch"].mean() if len(ok) else None),
            "epochs": ", ".join(sorted({str(int(value)) for value in ok["epochs_completed"].dropna()})) or fmt.MISSING,
            "adds_up": _time_sentence(ok),
            "load": _load_text(runs),
        })
    return {"image": figures.timing_figure(table, colours), "rows": rows}


def _time_sentence(ok: pd.DataFrame) -> str:
    """How one model's mean training time adds up: epochs x seconds per epoch, from its ok runs."""
    if ok.empty:
        return "no successful run"
    epochs = ok["epochs_completed"].mean()
    return (f"{epochs:.0f} epochs x {fmt.seconds(ok['seconds_per_epoch'].mean())} per epoch "
            f"= {fmt.seconds(ok['train_seconds'].mean())}")


def _load_text(runs: pd.DataFrame) -> str:
    """The busiest 1-minute load average seen at the end of this model's training jobs, against the core count."""
    loads = runs["load_average"].dropna() if "load_average" in runs else pd.Series(dtype=float)
    if loads.empty:
        return fmt.MISSING
    cores = runs["cpu_count"].dropna()
    return f"{loads.max():.1f}" + (f" on {int(cores.max())} cores" if len(cores) else "")


def diverged_section(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Section 8: every run that did not end ok, with its epoch."""
    diverged = table[table["status"] != "ok"]
    return [{"model": row.model, "seed": int(row.seed),
             "epoch": fmt.MISSING if pd.isna(row.diverged_epoch) else int(row.diverged_epoch)}
            for row in diverged.itertuples()]


def reference_section(params: Params, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Section 10: article.reference_rows with our train time and the speed-up written out."""
    rows = article.reference_rows(params, metrics)
    for row in rows:
        row["our_seconds_text"] = fmt.seconds(row["our_seconds"])
        speedup = row["speedup"]
        if not speedup:
            row["speed_text"] = "–"
        elif speedup >= 1:
            row["speed_text"] = f"{speedup:.1f}x faster"
        else:
            row["speed_text"] = f"{1 / speedup:.1f}x slower"
    return rows


def build_context(params: Params, inputs: ReportInputs, table: pd.DataFrame, metrics: dict[str, Any],
                  curves: pd.DataFrame) -> dict[str, Any]:
    """Everything the template needs, in one dict (see templates/report.html.j2)."""
    models = list(params.models)
    colours = figures.model_colours(models)
    intervals = {name: entry["test_accuracy"]["ci95"] for name, entry in metrics["models"].items()}
    means = aggregate.mean_curves(curves)
    return {
        "title": "MNIST benchmark: hand-written NumPy MLP vs PyTorch",
        "params_path": str(params.path),
        "seeds": list(params.seeds),
        "hidden": params.network.hidden,
        "n_train": params.data.n_train,
        "n_val": params.data.n_val,
        "n_test": params.data.n_test,
        "summary": summary_section(params, metrics),
        "comparisons": comparison_section(metrics),
        "accuracy_image": figures.accuracy_figure(table, intervals, colours),
        "curves_image": figures.learning_curves_figure(means, colours) if not means.empty else None,
        "confusion": confusion_section(inputs, colours),
        "mistakes": mistakes_section(inputs, models),
        "timing": timing_section(table, colours),
        "diverged": diverged_section(table),
        "exclusion_note": aggregate.EXCLUSION_NOTE,
        "provenance": provenance_section(params, inputs),
        "article": {"is_article_data": article.is_article_data(params), "preset": article.PRESET_PATH,
                    "rows": reference_section(params, metrics)},
    }
