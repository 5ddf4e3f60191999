"""Aggregate per-run results into per-model statistics, paired comparisons and reports/metrics.json.

One row per (model, seed) in a pandas run table; a run counts as "ok" when training and evaluation both say so.
Diverged runs stay in the table (the report flags them) but are excluded from every mean, std and interval.
Intervals are Student t intervals over seeds, and comparisons paired t tests: with one seed there is neither. Both
take Student's t distribution from scipy.special (`stdtrit`, `stdtr`, the functions scipy.stats.t calls) with the
formulas of scipy.stats.t.interval and scipy.stats.ttest_1samp: importing scipy.stats costs a report job about
0.9 s of CPU more than scipy.special (tests/test_report.py holds both to scipy.stats).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from mnistbench.report.inputs import ReportInputs

CONFIDENCE = 0.95

# Per-run quantities summarised per model: metrics.json key -> run table column (same name).
PER_RUN_QUANTITIES = (
    "test_accuracy",
    "test_loss",
    "macro_f1",
    "train_seconds",
    "seconds_per_epoch",
    "samples_per_second",
    "inference_images_per_second",
)

EXCLUSION_NOTE = "Diverged runs (non-finite training loss) are excluded from every mean, std and interval."


def run_table(inputs: ReportInputs) -> pd.DataFrame:
    """One row per (model, seed): status, diverged_epoch, every PER_RUN_QUANTITIES value, epochs, device, threads."""
    rows = []
    for run in inputs.runs:
        train, evaluation = run.train, run.evaluation
        rows.append({
            "model": run.model,
            "seed": run.seed,
            "status": run.status,
            "diverged_epoch": run.diverged_epoch,
            "test_accuracy": evaluation.get("test_accuracy"),
            "test_loss": evaluation.get("test_loss"),
            "macro_f1": evaluation.get("macro_f1"),
            "train_seconds": train.get("train_seconds"),
            "seconds_per_epoch": train.get("seconds_per_epoch"),
            "samples_per_second": train.get("samples_per_second"),
            "inference_images_per_second": (evaluation.get("inference") or {}).get("images_per_second"),
            "val_accuracy": final_val_accuracy(train),
            "target_epoch": (evaluation.get("time_to_target") or {}).get("epoch"),
            "target_seconds": (evaluation.get("time_to_target") or {}).get("seconds"),
            "epochs_completed": train.get("epochs_completed"),
            "device": train.get("device"),
            "threads": train.get("threads"),
            "load_average": train.get("load_average"),
            "cpu_count": (train.get("provenance") or {}).get("cpu_count"),
        })
    table = pd.DataFrame(rows)
    numeric = [*PER_RUN_QUANTITIES, "val_accuracy", "target_epoch", "target_seconds"]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table


def final_val_accuracy(train: dict[str, Any]) -> float | None:
    """The last epoch's validation accuracy of a training record (None without validation rows or history)."""
    history = train.get("history") or []
    return history[-1].get("val_accuracy") if history else None


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """Student t interval [low, high] for the mean of `values` (float64, shape (n,)); None when n < 2."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), standard_error(values)
    if sem == 0.0:
        return [mean, mean]
    low, high = (special.stdtrit(len(values) - 1, q) * sem + mean for q in ((1 - confidence) / 2, (1 + confidence) / 2))
    return [float(low), float(high)]


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of `values` (n,), n >= 2: sample std (ddof 1) / sqrt(n), as scipy.stats.sem."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def two_sided_p_value(values: np.ndarray) -> float:
    """One-sample t test of mean 0 for `values` (n,), n >= 2, not all equal: 2 P(T > |t|), T ~ t(n - 1)."""
    t = float(np.mean(values)) / standard_error(values)
    return float(2 * special.stdtr(len(values) - 1, -abs(t)))


def describe(values: pd.Series, with_interval: bool = False) -> dict[str, Any]:
    """{"mean", "std" (sample std, ddof 1; None for one value), "per_seed"[, "ci95"]} of the ok seeds' values."""
    array = values.dropna().to_numpy(dtype=np.float64)
    summary: dict[str, Any] = {
        "mean": float(np.mean(array)) if len(array) else None,
        "std": float(np.std(array, ddof=1)) if len(array) > 1 else None,
        "per_seed": [float(value) for value in array],
    }
    if with_interval:
        summary["ci95"] = t_interval(array)
    return summary


def model_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """metrics.json entry of one model; runs: its rows of the run table (all seeds, diverged included)."""
    ok = runs[runs["status"] == "ok"]
    diverged = runs[runs["status"] != "ok"]
    summary: dict[str, Any] = {
        column: describe(ok[column], with_interval=column == "test_accuracy") for column in PER_RUN_QUANTITIES
    }
    summary["val_accuracy"] = describe(ok["val_accuracy"])
    summary["time_to_target"] = time_to_target_summary(runs)
    summary["seeds_ok"] = [int(seed) for seed in ok["seed"]]
    summary["n_seeds_ok"] = len(ok)
    summary["n_diverged"] = len(diverged)
    summary["diverged"] = [
        {"seed": int(row.seed), "epoch": None if pd.isna(row.diverged_epoch) else int(row.diverged_epoch)}
        for row in diverged.itertuples()
    ]
    return summary


def time_to_target_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """Over a model's seeds: how many reached the target, and the mean epoch and seconds of those that did."""
    reached = runs[runs["status"].eq("ok") & runs["target_epoch"].notna()]
    return {
        "n_reached": len(reached),
        "n_seeds": len(runs),
        "epoch": describe(reached["target_epoch"]),
        "seconds": describe(reached["target_seconds"]),
    }


def add_relative_train_time(models: dict[str, dict[str, Any]]) -> None:
    """Add "relative_train_time": mean train seconds / the fastest model's mean (1.0 = fastest; None if unknown)."""
    means = {name: entry["train_seconds"]["mean"] for name, entry in models.items()}
    known = [value for value in means.values() if value is not None and value > 0]
    fastest = min(known) if known else None
    for name, entry in models.items():
        mean = means[name]
        entry["relative_train_time"] = mean / fastest if fastest and mean is not None else None


DIFFERENCE_DECIMALS = 12


def paired_difference_from_pivot(ok: pd.DataFrame, first: str, second: str) -> dict[str, Any]:
    """Accuracy of `first` minus `second` over the seeds where both runs are ok (same seed = same init, batches).

    ok: test accuracy of the ok runs, index = seed, one column per model. Returns {"seeds", "n_pairs",
    "per_seed", "mean", "std", "ci95", "p_value"} (paired t test; None with fewer than two pairs or no spread).
    """
    both = ok[[first, second]].dropna() if {first, second} <= set(ok.columns) else pd.DataFrame()
    differences = (both[first] - both[second]).to_numpy(dtype=np.float64) if len(both) else np.array([])
    # Accuracies are counts over at most 70,000 images, so true gaps are multiples of 1/70,000 or more: rounding to
    # 12 decimals drops only float rounding, which would otherwise turn "the same gap on every seed" into a t test
    # on a spread of 1e-16 and a p-value near 0.
    differences = np.round(differences, DIFFERENCE_DECIMALS)
    p_value = None
    if len(differences) > 1 and np.std(differences) > 0:
        p_value = two_sided_p_value(differences)
    return {
        "seeds": [int(seed) for seed in both.index],
        "n_pairs": len(differences),
        "per_seed": [float(value) for value in differences],
        "mean": float(np.mean(differences)) if len(differences) else None,
        "std": float(np.std(differences, ddof=1)) if len(differences) > 1 else None,
        "ci95": t_interval(differences),
        "p_value": p_value,
    }


def learning_curves(inputs: ReportInputs) -> pd.DataFrame:
    """Long table: model, seed, status, epoch, train_loss, val_loss, val_accuracy, seconds (float64; NaN if none)."""
    rows = [
        {
            "model": run.model,
            "seed": run.seed,
            "status": run.status,
            "epoch": entry["epoch"],
            "train_loss": entry.get("train_loss"),
            "val_loss": entry.get("val_loss"),
            "val_accuracy": entry.get("val_accuracy"),
            "seconds": entry.get("seconds"),
        }
        for run in inputs.runs
        for entry in run.train.get("history", [])
    ]
    columns = ["model", "seed", "status", "epoch", "train_loss", "val_loss", "val_accuracy", "seconds"]
    curves = pd.DataFrame(rows, columns=columns)
    values = ["train_loss", "val_loss", "val_accuracy", "seconds"]
    curves[values] = curves[values].apply(pd.to_numeric, errors="coerce")
    return curves


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per model and epoch over ok seeds: {train_loss, val_loss, val_accuracy} x {mean, min, max}, flat columns."""
    ok = curves[curves["status"] == "ok"]
    grouped = ok.groupby(["model", "epoch"])[["train_loss", "val_loss", "val_accuracy"]].agg(["mean", "min", "max"])
    grouped.columns = [f"{value}_{stat}" for value, stat in grouped.columns]
    return grouped.reset_index()


def summed_confusion(inputs: ReportInputs, model: str) -> np.ndarray | None:
    """Confusion matrix (10, 10) int64, rows = true class, summed over the model's ok seeds; None if none ok."""
    matrices = [np.asarray(run.evaluation["confusion_matrix"], dtype=np.int64)
                for run in inputs.runs_of(model) if run.status == "ok" and run.evaluation.get("confusion_matrix")]
    return np.sum(matrices, axis=0) if matrices else None


def per_class_f1(inputs: ReportInputs) -> pd.DataFrame:
    """Mean per-class F1 over ok seeds: index = class 0..9, one float64 column per model with an ok run."""
    columns = {}
    for model in dict.fromkeys(run.model for run in inputs.runs):
        scores = [run.evaluation["per_class"]["f1"] for run in inputs.runs_of(model)
                  if run.status == "ok" and run.evaluation.get("per_class")]
        if scores:
            columns[model] = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return pd.DataFrame(columns)
