"""Families: select each family's member on validation accuracy, then compare the selected members on test.

A family is one recipe run at several hyperparameter values (`family:` in params.yaml; an entry without one is its
own family). The selected member of a family is the one with the best mean final (last-epoch) validation accuracy
over its seeds; the test set never takes part in selection. A member with any diverged seed is never selected
while another member has none. Ties go to the smaller learning rate, then to the name.

Paired comparisons of the selected members on test accuracy get a Holm adjustment over all of them (Holm 1979:
family-wise error rate 5%, valid under any dependence between the tests); verdicts use the adjusted p-value.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from mnistbench.report import aggregate
from mnistbench.sweep import setting_value

ADJUSTMENT = "holm"
ALPHA = 0.05
# Means of validation accuracy that agree to this many decimals are a tie (summation order changes the last bits).
TIE_DECIMALS = 12


def holm_adjust(p_values: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values, in the input order; None (no test) stays None and is not counted.

    Sorted ascending, the i-th smallest of m p-values (i from 0) becomes max over j <= i of min(1, (m - j) p_(j)).
    """
    known = [(value, index) for index, value in enumerate(p_values) if value is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (value, index) in enumerate(sorted(known)):
        running = max(running, min(1.0, (len(known) - rank) * value))
        adjusted[index] = running
    return adjusted


def member_scores(table: pd.DataFrame, members: list[str], learning_rates: dict[str, float]) -> list[dict[str, Any]]:
    """Per member: mean and per-seed final validation accuracy over ok seeds, diverged seeds, lr; ranked best first.

    table: the run table (model, seed, status, val_accuracy = the last epoch's validation accuracy).
    """
    scores = []
    for model in members:
        runs = table[table["model"] == model]
        ok = runs[runs["status"] == "ok"]["val_accuracy"].dropna().to_numpy(dtype=np.float64)
        scores.append({
            "model": model,
            "val_accuracy": float(np.mean(ok)) if len(ok) else None,
            "val_per_seed": [float(value) for value in ok],
            "n_diverged": int((runs["status"] != "ok").sum()),
            "lr": learning_rates[model],
        })
    return sorted(scores, key=_selection_key)


def _selection_key(score: dict[str, Any]) -> tuple:
    """Best first: no diverged seed, then higher mean validation accuracy, then smaller lr, then name."""
    mean = score["val_accuracy"]
    return (score["n_diverged"] > 0, mean is None, -round(mean, TIE_DECIMALS) if mean is not None else 0.0,
            score["lr"], score["model"])


def swept_keys(runs: dict[str, dict[str, Any]], members: list[str]) -> list[str]:
    """The hyperparameters whose values differ between the members (lr first, then in params order); a key inside
    a nested mapping is dotted (schedule.warmup_epochs), as `mnistbench sweep --set` names it."""
    keys = dict.fromkeys(key for member in members for key in _dotted_keys(runs[member]) if key != "family")
    differing = [key for key in keys if len({repr(setting_value(runs[member], key)) for member in members}) > 1]
    return sorted(differing, key=lambda key: key != "lr")


def _dotted_keys(entry: dict[str, Any]) -> list[str]:
    keys = []
    for key, value in entry.items():
        keys += [f"{key}.{inner}" for inner in value] if isinstance(value, dict) else [key]
    return keys


def families_document(table: pd.DataFrame, families: dict[str, list[str]],
                      runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """metrics.json "families": per family its members, the selected one, how, its runner-up and the ranking.

    runs: the params' models mapping (model -> its entry, for lr and the swept hyperparameters).
    """
    document = {}
    for family, members in families.items():
        ranking = member_scores(table, members, {model: runs[model]["lr"] for model in members})
        selected = ranking[0]
        runner_up = ranking[1] if len(ranking) > 1 else None
        document[family] = {
            "members": members,
            "selected": selected["model"],
            "selected_by": "val_accuracy",
            "val_accuracy": selected["val_accuracy"],
            "runner_up": runner_up["model"] if runner_up else None,
            "runner_up_val_accuracy": runner_up["val_accuracy"] if runner_up else None,
            "swept": swept_keys(runs, members),
            "ranking": ranking,
        }
    return document


def family_order(families: dict[str, dict[str, Any]]) -> list[str]:
    """Families best first by their selected member's mean validation accuracy (unknown last), then by name."""
    def key(name: str) -> tuple:
        value = families[name]["val_accuracy"]
        return (value is None, -round(value, TIE_DECIMALS) if value is not None else 0.0, name)

    return sorted(families, key=key)


def comparisons(table: pd.DataFrame, families: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired test-accuracy differences between every two families' selected members, Holm-adjusted.

    Pairs follow family_order (a is the family ranked higher on validation). Each entry has the fixed keys
    a, b, diff_mean, ci95, p, p_adjusted, n_pairs, plus family_a, family_b, per_seed, std, seeds, verdict.
    """
    order = family_order(families)
    ok = table[table["status"] == "ok"].pivot(index="seed", columns="model", values="test_accuracy")
    rows = []
    for first, second in combinations(order, 2):
        a, b = families[first]["selected"], families[second]["selected"]
        pair = aggregate.paired_difference_from_pivot(ok, a, b)
        rows.append({"a": a, "b": b, "family_a": first, "family_b": second, "diff_mean": pair["mean"],
                     "ci95": pair["ci95"], "p": pair["p_value"], "n_pairs": pair["n_pairs"],
                     "per_seed": pair["per_seed"], "std": pair["std"], "seeds": pair["seeds"]})
    for row, adjusted in zip(rows, holm_adjust([row["p"] for row in rows]), strict=True):
        row["p_adjusted"] = adjusted
        row["verdict"] = _verdict(row)
    return rows


def _verdict(row: dict[str, Any]) -> str:
    """"a better" / "b better" when the adjusted p-value is below ALPHA, else "no clear difference";
    "not available" without a test (fewer than two paired seeds)."""
    if row["p_adjusted"] is None:
        if row["n_pairs"] >= 2 and row["std"] == 0.0 and row["diff_mean"] != 0.0:
            return "a better" if row["diff_mean"] > 0 else "b better"  # the same gap on every seed
        return "not available" if row["n_pairs"] < 2 else "no clear difference"
    if row["p_adjusted"] >= ALPHA:
        return "no clear difference"
    return "a better" if row["diff_mean"] > 0 else "b better"
