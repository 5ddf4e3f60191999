"""What the report template shows, section by section: plain data (strings, numbers, data URIs), no HTML.

Every number of the summary table carries the metrics.json key it comes from (`key`) and its exact value
(`value`), so the HTML can be checked against reports/metrics.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mnistbench.errors import MnistbenchError
from mnistbench.params import Params
from mnistbench.provenance import process_started
from mnistbench.report import aggregate, article, figures, recipes
from mnistbench.report import formatting as fmt
from mnistbench.report.inputs import ReportInputs
from mnistbench.report.provenance_view import provenance_section
from mnistbench.sweep import is_number, setting_value

WORST_SHOWN = 8

# Summary columns: (header, metrics key inside a model entry, formatter, which value is best: max | min | None).
SUMMARY_TABLE_COLUMNS: tuple[tuple[str, str, Callable[[Any], str], str | None], ...] = (
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


def summary_section(params: Params, metrics: dict[str, Any], selected: list[str]) -> dict[str, Any]:
    """Section 1: headers and one row per family's selected model; each cell {key, value, json, text, best}."""
    models = metrics["models"]
    rows = []
    for name in selected:
        entry = models[name]
        cells = [_cell(f"models.{name}.{key}", lookup(entry, key), formatter) for _, key, formatter, _ in
                 SUMMARY_TABLE_COLUMNS]
        per_seed = [fmt.percent(value) for value in entry["test_accuracy"]["per_seed"]]
        family = metrics["families"][entry["family"]]
        rows.append({"model": name, "recipe": recipes.recipe_text(params.mapping["models"][name]), "cells": cells,
                     "per_seed": ", ".join(per_seed) or fmt.MISSING, "seeds_ok": entry["n_seeds_ok"],
                     "n_diverged": entry["n_diverged"], "family": entry["family"],
                     "n_members": len(family["members"])})
    for column, (_, _, _, best) in enumerate(SUMMARY_TABLE_COLUMNS):
        _mark_best([row["cells"][column] for row in rows], best)
    return {"headers": [header for header, *_ in SUMMARY_TABLE_COLUMNS], "rows": rows,
            "headline": headline(params, metrics)}


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


MAX_HEADLINE = 8
COMPARED_IN_HEADLINE = 4


def label(params: Params, metrics: dict[str, Any], model: str) -> str:
    """How the text names a model: its name, or "FAMILY at lr 0.003" for a member of a family of several."""
    family = metrics["families"][metrics["models"][model]["family"]]
    if len(family["members"]) == 1:
        return model
    run = params.mapping["models"][model]
    values = ", ".join(f"{key} {setting_value(run, key)}" for key in family["swept"])
    return f"{metrics['models'][model]['family']} at {values}"


def headline(params: Params, metrics: dict[str, Any]) -> list[str]:
    """At most MAX_HEADLINE plain sentences, whatever the number of models: the best family (on validation),
    the nearest others against it, how many more are compared, the fastest to the target, diverged runs."""
    order = metrics["family_order"]
    models = metrics["models"]
    if not order:
        return []
    lines = [_best_sentence(params, metrics, order[0])]
    against_best = [row for row in metrics["comparisons"] if row["family_a"] == order[0]]
    for row in against_best[:COMPARED_IN_HEADLINE]:
        lines.append(verdict_sentence(row, label(params, metrics, row["a"]), label(params, metrics, row["b"])))
    if len(order) > 1 + COMPARED_IN_HEADLINE:
        lines.append(f"{len(order) - 1 - COMPARED_IN_HEADLINE} more families are compared under "
                     f"'Is the difference real?' ({len(metrics['comparisons'])} pairs, Holm-adjusted).")
    lines.append(_fastest_sentence(params, metrics))
    diverged = sum(entry["n_diverged"] for entry in models.values())
    if diverged:
        lines.append(f"{diverged} run(s) diverged and are excluded from the averages (see Runs that diverged).")
    return [line for line in lines if line][:MAX_HEADLINE]


def _best_sentence(params: Params, metrics: dict[str, Any], family_name: str) -> str:
    family = metrics["families"][family_name]
    model = family["selected"]
    entry = metrics["models"][model]
    accuracy = entry["test_accuracy"]
    interval = f" {fmt.interval(accuracy['ci95'])}" if accuracy["ci95"] else ""
    text = (f"Best on validation: {label(params, metrics, model)}, with {fmt.percent(accuracy['mean'])} test "
            f"accuracy{interval} (mean of {entry['n_seeds_ok']} seed(s)).")
    if len(family["members"]) > 1:
        text += (f" Selected from {len(family['members'])} settings by validation accuracy "
                 f"({fmt.percent(family['val_accuracy'])}); the test set took no part in the choice.")
    return text


def _fastest_sentence(params: Params, metrics: dict[str, Any]) -> str:
    """The selected model that reached the target in the fewest seconds, or the fastest per epoch if none did."""
    selected = [family["selected"] for family in metrics["families"].values()]
    target = fmt.percent(metrics["target_accuracy"])
    reached = {model: metrics["models"][model]["time_to_target"]["seconds"]["mean"] for model in selected}
    reached = {model: value for model, value in reached.items() if value is not None}
    if reached:
        fastest = min(reached, key=reached.get)
        return (f"Fastest to {target} validation accuracy: {label(params, metrics, fastest)} in "
                f"{fmt.seconds(reached[fastest])} of training (mean over the seeds that reached it).")
    per_epoch = {model: metrics["models"][model]["seconds_per_epoch"]["mean"] for model in selected}
    per_epoch = {model: value for model, value in per_epoch.items() if value is not None}
    if not per_epoch:
        return ""
    fastest = min(per_epoch, key=per_epoch.get)
    return (f"No selected model reached {target} validation accuracy; fastest per epoch: "
            f"{label(params, metrics, fastest)} ({fmt.seconds(per_epoch[fastest])}).")


SHORT_VERDICTS = {"a better": "A more accurate", "b better": "B more accurate",
                  "no clear difference": "no clear difference", "not available": "not available"}


def comparison_section(params: Params, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Section 2: one row per pair of families' selected models: difference, interval, p, Holm-adjusted p."""
    rows = []
    for pair in metrics["comparisons"]:
        rows.append({**pair, "mean_text": fmt.points(pair["diff_mean"], signed=True),
                     "ci_text": fmt.interval(pair["ci95"], signed=True),
                     "p_text": _p_text(pair["p"]), "p_adjusted_text": _p_text(pair["p_adjusted"]),
                     "short_verdict": SHORT_VERDICTS[pair["verdict"]],
                     "a_label": label(params, metrics, pair["a"]), "b_label": label(params, metrics, pair["b"])})
    return rows


def _p_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


# A paired gap this small (as a fraction, 0.1 points) is real for the seeds but of no practical weight.
TINY_GAP = 0.001


def verdict_sentence(pair: dict[str, Any], a: str, b: str) -> str:
    """One plain sentence on a comparison (a, b: how the text names the two models)."""
    n = pair["n_pairs"]
    if pair["verdict"] == "not available":
        reason = "no seed where both runs succeeded" if n == 0 else f"only {n} paired seed"
        return f"{a} vs {b}: no test ({reason}; a paired test needs at least two)."
    winner, loser = (a, b) if pair["diff_mean"] >= 0 else (b, a)
    gap = fmt.points(abs(pair["diff_mean"]))
    p_text = f"Holm-adjusted p = {_p_text(pair['p_adjusted'])}"
    if pair["verdict"] == "no clear difference":
        return (f"{winner} is {gap} points ahead of {loser} on test accuracy, within seed-to-seed noise "
                f"with {n} seeds ({p_text}).")
    sentence = f"{winner} is {gap} points more accurate than {loser} on test ({p_text}): unlikely to be seed noise."
    if abs(pair["diff_mean"]) < TINY_GAP:
        sentence += (f" It is also tiny (under {fmt.points(TINY_GAP)} points): with the same initial weights and "
                     "batches, such a gap can come from float32 rounding alone.")
    return sentence


def confusion_section(inputs: ReportInputs, colours: dict[str, str]) -> dict[str, Any]:
    """Section 5: per model with an ok run, its summed confusion matrix as two heatmap tables (counts, % of each true
    digit), and the per-class F1 figure."""
    matrices = []
    for model in colours:
        matrix = aggregate.summed_confusion(inputs, model)
        if matrix is not None:
            matrices.append({"model": model, "total": int(matrix.sum()), "tables": figures.confusion_tables(matrix)})
    f1 = aggregate.per_class_f1(inputs)
    f1 = f1[[model for model in f1.columns if model in colours]]
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


def timing_section(table: pd.DataFrame, colours: dict[str, str], metrics: dict[str, Any]) -> dict[str, Any]:
    """Section 7: the timing figure (selected models) and per model (all): device(s), threads, images/s, epochs,
    time to the target validation accuracy."""
    rows = []
    for model in metrics["models"]:
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
            "to_target": _target_text(metrics["models"][model]["time_to_target"]),
            "selected": metrics["models"][model]["selected"],
        })
    return {"image": figures.timing_figure(table, colours), "rows": rows,
            "target": fmt.percent(metrics["target_accuracy"])}


def _target_text(summary: dict[str, Any]) -> str:
    """ "epoch 4, 12.3 s (3 of 3 seeds)" from a model's time_to_target summary, or "not reached"."""
    if not summary["n_reached"]:
        return "not reached"
    epoch, seconds = summary["epoch"]["mean"], summary["seconds"]["mean"]
    return (f"epoch {epoch:.3g}, {fmt.seconds(seconds)} ({summary['n_reached']} of {summary['n_seeds']} seeds "
            "reached it)")


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


def pipeline_account(inputs: ReportInputs, report_started: float, now: float) -> dict[str, Any]:
    """The pipeline's own account of its time, from the job clocks the stages record (mnistbench.provenance.job_timing):

    - wall: from the earliest job's process start to `now` (the report is the last job; it is about to be written);
    - work: the sum of the jobs' own wall times (process start to record written), the report's up to `now`;
    - cores: the most jobs that ran at once, at most the machine's cores (from the records' provenance);
    - floor: download + prepare + report, each its own time, + the training loops' seconds / cores: what no
      scheduler could beat on those cores, even with free start-up and evaluation;
    - ratio: wall / floor (1 = at the floor); idle: wall time in which no job ran (a run restored from DVC's cache
      or made of several invocations shows its gaps there); busy_ratio: (wall - idle) / floor, the ratio of such a
      run without its gaps.

    report_started, now: Unix times. Returns {"missing": [...]} naming the clocks that are absent (records written
    before job clocks existed, or logs/ deleted) instead of numbers.
    """
    clocks = {stage: _job_clock(inputs.layout.logs_dir / f"{stage}.job.json") for stage in ("download", "prepare")}
    clocks |= {f"{kind} {run.model} seed {run.seed}": record.get("job") for run in inputs.runs
               for kind, record in (("train", run.train), ("evaluate", run.evaluation))}
    missing = sorted(name for name, clock in clocks.items() if clock is None)
    if missing:
        return {"missing": missing}
    intervals = [(clock["started"], clock["started"] + clock["seconds"]) for clock in clocks.values()]
    intervals.append((report_started, now))
    machine_cores = max((run.train.get("provenance", {}).get("cpu_count") or 1 for run in inputs.runs), default=1)
    cores = min(_most_at_once(intervals), machine_cores)
    serial = clocks["download"]["seconds"] + clocks["prepare"]["seconds"] + (now - report_started)
    training = sum(run.train.get("wall_seconds") or 0.0 for run in inputs.runs)
    floor = serial + training / cores
    wall, busy = now - min(start for start, _ in intervals), _covered(intervals)
    return {"missing": [], "wall": wall, "work": sum(end - start for start, end in intervals), "cores": cores,
            "machine_cores": machine_cores, "serial": serial, "training": training, "floor": floor,
            "ratio": wall / floor, "idle": wall - busy, "busy_ratio": busy / floor, "jobs": len(intervals)}


def _job_clock(path) -> dict[str, float] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) intervals."""
    covered, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        covered += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return covered


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


SECTIONS = (("summary", "Summary table"), ("families", "Families: selection on validation and sensitivity"),
            ("difference", "Is the difference real?"), ("accuracy", "Accuracy per model, seed by seed"),
            ("curves", "Learning curves"), ("confusion", "Confusion matrices and per-class F1"),
            ("mistakes", "The most confidently wrong test images"), ("time", "Time"),
            ("diverged", "Runs that diverged"), ("provenance", "Provenance"),
            ("reference", "Reference: the original article"))


def section_numbers(with_families: bool) -> dict[str, Any]:
    """Section id -> {"number", "title"}, in order; the families section only when some family has several members."""
    shown = [(key, title) for key, title in SECTIONS if with_families or key != "families"]
    return {key: {"number": number, "title": title} for number, (key, title) in enumerate(shown, start=1)}


def selected_models(params: Params, metrics: dict[str, Any]) -> list[str]:
    """Each family's selected model, in params order: the models the heavy sections show."""
    chosen = {family["selected"] for family in metrics["families"].values()}
    return [model for model in params.models if model in chosen]


def families_section(params: Params, metrics: dict[str, Any], table: pd.DataFrame,
                     colours: dict[str, str]) -> dict[str, Any] | None:
    """Families of several members: the selection per family, the sensitivity figures, and one compact row per
    model sorted by validation accuracy. None when every family has one member (nothing was selected)."""
    families = metrics["families"]
    tuned = [name for name in metrics["family_order"] if len(families[name]["members"]) > 1]
    if not tuned:
        return None
    rows = []
    for name in tuned:
        family = families[name]
        runner = family["runner_up"]
        rows.append({"family": name, "n_members": len(family["members"]), "swept": ", ".join(family["swept"]),
                     "selected": family["selected"], "selected_label": label(params, metrics, family["selected"]),
                     "val": fmt.percent(family["val_accuracy"]),
                     "runner_up": label(params, metrics, runner) if runner else fmt.MISSING,
                     "runner_up_val": fmt.percent(family["runner_up_val_accuracy"])})
    return {"rows": rows, "figures": sensitivity_figures(params, metrics, table, colours),
            "models": compact_rows(params, metrics)}


def compact_rows(params: Params, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per model, sorted by mean final validation accuracy (best first, unknown last)."""
    rows = []
    for model, entry in metrics["models"].items():
        family = metrics["families"][entry["family"]]
        run = params.mapping["models"][model]
        rows.append({"model": model, "family": entry["family"], "selected": entry["selected"],
                     "setting": ", ".join(f"{key} {setting_value(run, key)}" for key in family["swept"]) or "–",
                     "val_value": entry["val_accuracy"]["mean"], "val": fmt.percent(entry["val_accuracy"]["mean"]),
                     "test": fmt.percent(entry["test_accuracy"]["mean"]),
                     "seconds_per_epoch": fmt.seconds(entry["seconds_per_epoch"]["mean"]),
                     "to_target": fmt.seconds(entry["time_to_target"]["seconds"]["mean"])
                     if entry["time_to_target"]["n_reached"] else "not reached",
                     "n_diverged": entry["n_diverged"], "n_seeds": entry["n_seeds_ok"] + entry["n_diverged"]})
    return sorted(rows, key=lambda row: (row["val_value"] is None, -(row["val_value"] or 0.0), row["model"]))


def sensitivity_figures(params: Params, metrics: dict[str, Any], table: pd.DataFrame,
                        colours: dict[str, str]) -> list[dict[str, Any]]:
    """One figure per swept numeric hyperparameter, holding every family of several members that sweeps it, each
    through its own selected member (its other swept keys held at the selected values): families of different
    optimizers side by side, each at its own best. A swept key with a value that is not a number is not drawn."""
    runs = params.mapping["models"]
    groups: dict[str, list[str]] = {}
    for name in metrics["family_order"]:
        family = metrics["families"][name]
        if len(family["members"]) < 2:
            continue
        for key in family["swept"]:
            if all(is_number(setting_value(runs[member], key)) for member in family["members"]):
                groups.setdefault(key, []).append(name)
    drawn = []
    for key, names in sorted(groups.items(), key=lambda item: item[0] != "lr"):
        series = [_sensitivity_series(params, metrics, table, name, key, colours) for name in names]
        drawn.append({"key": key, "families": names, "image": figures.sensitivity_figure(series, key),
                      "scale": figures.axis_scale(figures.series_values(series)).note})
    return drawn


def _sensitivity_series(params: Params, metrics: dict[str, Any], table: pd.DataFrame, name: str, key: str,
                        colours: dict[str, str]) -> figures.SensitivitySeries:
    """The family's members against `key`: those on its slice through the selected member (every other swept key
    at the selected member's value) as points, the rest as others."""
    family = metrics["families"][name]
    runs = params.mapping["models"]
    held = [other for other in family["swept"] if other != key]
    chosen = runs[family["selected"]]
    points, others = [], []
    for model in family["members"]:
        point = _sensitivity_point(table, model, float(setting_value(runs[model], key)), family["selected"])
        on_slice = all(setting_value(runs[model], other) == setting_value(chosen, other) for other in held)
        (points if on_slice else others).append(point)
    return figures.SensitivitySeries(
        family=name, points=points, others=others, colour=colours[family["selected"]],
        held=", ".join(f"{other} {setting_value(chosen, other)}" for other in held))


def _sensitivity_point(table: pd.DataFrame, model: str, x: float, selected: str) -> dict[str, Any]:
    """One member: x, final validation and test accuracy per ok seed, the first diverged epoch (None if no seed
    diverged), whether it is the selected member."""
    runs = table[table["model"] == model]
    ok = runs[runs["status"] == "ok"]
    diverged = runs[runs["status"] != "ok"]["diverged_epoch"].dropna()
    return {"model": model, "x": x, "val": ok["val_accuracy"].dropna().to_numpy(dtype=float),
            "test": ok["test_accuracy"].dropna().to_numpy(dtype=float),
            "n_diverged": int((runs["status"] != "ok").sum()),
            "diverged_epoch": int(diverged.min()) if len(diverged) else None, "selected": model == selected}


def schedule_section(params: Params, inputs: ReportInputs, models: list[str],
                     colours: dict[str, str]) -> dict[str, Any] | None:
    """The learning rate against the step for the selected models, from their train records' lr_curve; None when
    every selected model keeps a constant learning rate."""
    runs = params.mapping["models"]
    if not any(recipes.is_scheduled(runs[model]) for model in models):
        return None
    curves = [curve for curve in (_lr_curve(inputs, runs[model], model) for model in models) if curve is not None]
    missing = [model for model in models if model not in {curve.model for curve in curves}]
    return {"image": figures.lr_schedule_figure(curves, colours) if curves else None, "missing": missing}


def _lr_curve(inputs: ReportInputs, run: dict[str, Any], model: str) -> figures.LearningRateCurve | None:
    """The lr_curve of the model's first ok seed (of its first seed if none is ok); None if no record has one."""
    ordered = sorted(inputs.runs_of(model), key=lambda one: one.status != "ok")
    recorded = next((one.train["lr_curve"] for one in ordered if "lr_curve" in one.train), None)
    if recorded is None:
        return None
    label = f"{model}: lr {recipes.number(run['lr'])}, {recipes.schedule_text(run['schedule'])}"
    return figures.LearningRateCurve(model=model, step=np.asarray(recorded["step"], dtype=np.int64),
                                     lr=np.asarray(recorded["lr"], dtype=np.float64), base_lr=float(run["lr"]),
                                     label=label)


def build_context(params: Params, inputs: ReportInputs, table: pd.DataFrame, metrics: dict[str, Any],
                  curves: pd.DataFrame) -> dict[str, Any]:
    """Everything the template needs, in one dict (see templates/report.html.j2)."""
    models = selected_models(params, metrics)
    colours = figures.model_colours(models)
    intervals = {name: entry["test_accuracy"]["ci95"] for name, entry in metrics["models"].items()}
    chosen = table[table["model"].isin(models)]
    means = aggregate.mean_curves(curves[curves["model"].isin(models)])
    families = families_section(params, metrics, table, colours)
    return {
        "title": "MNIST benchmark: hand-written NumPy MLP vs PyTorch",
        "params_path": str(params.path),
        "seeds": list(params.seeds),
        "hidden": params.network.hidden,
        "n_train": params.data.n_train,
        "n_val": params.data.n_val,
        "n_test": params.data.n_test,
        "summary": summary_section(params, metrics, models),
        "comparisons": comparison_section(params, metrics),
        "adjustment": metrics["adjustment"],
        "families": families,
        "sections": section_numbers(families is not None),
        "n_models": len(metrics["models"]),
        "n_shown": len(models),
        "accuracy_image": figures.accuracy_figure(chosen, intervals, colours),
        "curves_image": figures.learning_curves_figure(means, colours) if not means.empty else None,
        "schedule": schedule_section(params, inputs, models, colours),
        "confusion": confusion_section(inputs, colours),
        "mistakes": mistakes_section(inputs, models),
        "timing": timing_section(chosen, colours, metrics),
        "diverged": diverged_section(table),
        "exclusion_note": aggregate.EXCLUSION_NOTE,
        "provenance": provenance_section(params, inputs),
        "pipeline": pipeline_account(inputs, process_started(), time.time()),
        "article": {"is_article_data": article.is_article_data(params), "preset": article.PRESET_PATH,
                    "rows": reference_section(params, metrics)},
    }
