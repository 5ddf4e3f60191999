"""The two JSON documents of the report stage: reports/metrics.json (everything the report and tests read) and
reports/summary.json (the few short numbers per model that `dvc metrics show` and `dvc exp show` print)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mnistbench.params import group_families
from mnistbench.report import aggregate
from mnistbench.report import families as fam


def metrics_document(table: pd.DataFrame, runs: dict[str, dict[str, Any]], target_accuracy: float) -> dict[str, Any]:
    """The content of reports/metrics.json: per model (test accuracy, train seconds: mean, std, per_seed), per
    family (members, the selected one), the comparisons of selected members, and notes.

    runs: the params' `models` mapping, in params order (its `family` keys group the models).
    """
    models = {name: aggregate.model_summary(table[table["model"] == name]) for name in runs}
    aggregate.add_relative_train_time(models)
    families = fam.families_document(table, group_families(runs), runs)
    for family, entry in families.items():
        for member in entry["members"]:
            models[member]["family"] = family
            models[member]["selected"] = member == entry["selected"]
    return {
        "models": models,
        "families": families,
        "family_order": fam.family_order(families),
        "comparisons": fam.comparisons(table, families),
        "adjustment": fam.ADJUSTMENT,
        "alpha": fam.ALPHA,
        "target_accuracy": target_accuracy,
        "confidence": aggregate.CONFIDENCE,
        "notes": [
            aggregate.EXCLUSION_NOTE,
            "std is the sample standard deviation over seeds (ddof 1); ci95 a Student t interval for the mean; both "
            "are null with fewer than two ok seeds.",
            "Each family's member is selected on mean final validation accuracy over seeds; the test set never takes "
            "part in selection. Comparisons pair the selected members seed by seed on test accuracy; p_adjusted is "
            "Holm's step-down adjustment over all comparisons, and verdicts use it.",
        ],
    }


def summary_document(metrics: dict[str, Any]) -> dict[str, Any]:
    """reports/summary.json, the compact metrics DVC shows: per model, percentages and seconds, short keys.

    acc: test accuracy mean (%), lo/hi: its 95% interval (%), val: final validation accuracy mean (%), s_ep: seconds
    per epoch, ttt: seconds to reach evaluate.target_accuracy (mean of the seeds that reached it; null if none),
    div: seeds diverged.
    """
    def percent(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 2)

    def rounded(value: float | None) -> float | None:
        return None if value is None else float(f"{value:.3g}")

    summary = {}
    for name, entry in metrics["models"].items():
        interval = entry["test_accuracy"]["ci95"] or [None, None]
        summary[name] = {
            "acc": percent(entry["test_accuracy"]["mean"]),
            "lo": percent(interval[0]),
            "hi": percent(interval[1]),
            "val": percent(entry["val_accuracy"]["mean"]),
            "s_ep": rounded(entry["seconds_per_epoch"]["mean"]),
            "ttt": rounded(entry["time_to_target"]["seconds"]["mean"]),
            "div": entry["n_diverged"],
        }
    return summary
