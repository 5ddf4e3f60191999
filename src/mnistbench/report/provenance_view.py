"""Report section 9: what produced these results (params, code, data, software, hardware, time).

Gathers the provenance every stage recorded beside its result and puts it in rows the template prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from mnistbench.errors import MnistbenchError
from mnistbench.params import Params, load_params
from mnistbench.paths import Layout

ABSENT = "(absent)"
# Keys of source.json / stats.json not repeated in the report: their provenance is shown once, from the runs.
HIDDEN_KEYS = ("provenance",)


def flatten(mapping: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [{"d": 2}]} -> {"a.b": 1, "c.0.d": 2}; other lists and scalars are leaves."""
    if isinstance(mapping, list) and mapping and all(isinstance(item, dict) for item in mapping):
        mapping = {str(index): item for index, item in enumerate(mapping)}
    if not isinstance(mapping, dict):
        return {prefix: mapping}
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def params_differences(in_force: dict[str, Any], default: dict[str, Any]) -> list[dict[str, str]]:
    """Rows {key, default, in_force} for every dotted key whose value differs (absent on one side included).

    A model entry present on one side only is one row (models.NAME), not one row per key.
    """
    ours, theirs = _models_as_leaves(in_force, default), _models_as_leaves(default, in_force)
    return [{"key": key, "default": _show(theirs.get(key, ABSENT)), "in_force": _show(ours.get(key, ABSENT))}
            for key in sorted(set(ours) | set(theirs)) if ours.get(key, ABSENT) != theirs.get(key, ABSENT)]


def _models_as_leaves(params: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """flatten(params), but a model entry that `other` lacks stays whole under models.NAME."""
    flat = flatten({key: value for key, value in params.items() if key != "models"})
    for name, run in params.get("models", {}).items():
        if name in other.get("models", {}):
            flat.update(flatten(run, f"models.{name}"))
        else:
            flat[f"models.{name}"] = run
    return flat


def _show(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(
        "\n...").strip()


def default_params(layout: Layout) -> dict[str, Any] | None:
    """The params.yaml of the repository being run; None where it cannot be read."""
    try:
        return load_params(layout.params_yaml).mapping
    except MnistbenchError:
        return None


def parse_date(text: Any) -> datetime | None:
    """An ISO date as an aware datetime (naive ones taken as UTC); None when absent or unreadable."""
    try:
        date = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return date if date.tzinfo else date.replace(tzinfo=UTC)


def pipeline_time(inputs: Any) -> dict[str, Any]:
    """Two measures of the pipeline's time: the span from the download date (source.json) to the latest
    train/eval provenance date, and the sum of the training jobs' wall_seconds."""
    dates = [parse_date(record.get("provenance", {}).get("date"))
             for run in inputs.runs for record in (run.train, run.evaluation)]
    dates = [date for date in dates if date is not None]
    start = parse_date(inputs.source.get("date")) or (min(dates) if dates else None)
    span = (max(dates) - start).total_seconds() if dates and start else None
    wall = [run.train.get("wall_seconds") for run in inputs.runs if run.train.get("wall_seconds") is not None]
    return {
        "first": start.isoformat() if start else None,
        "last": max(dates).isoformat() if dates else None,
        "span_seconds": span,
        "train_wall_seconds": float(sum(wall)) if wall else None,
    }


def software_rows(inputs: Any) -> dict[str, Any]:
    """Versions, git state and hardware, from every run's recorded provenance."""
    records = [record.get("provenance", {}) for run in inputs.runs for record in (run.train, run.evaluation)]
    first = next((record for record in records if record), {})
    commits = sorted({str((record.get("git") or {}).get("commit")) for record in records if record})
    dirty = any((record.get("git") or {}).get("dirty") for record in records)
    backends = {run.model: run.train["backend"] for run in inputs.runs if run.train.get("backend")}
    return {
        "commits": commits,
        "dirty": dirty,
        "python": first.get("python"),
        "packages": first.get("packages", {}),
        "platform": first.get("platform"),
        "cpu": first.get("cpu"),
        "cpu_count": first.get("cpu_count"),
        "devices": sorted({str(record.get("device")) for record in records if record}),
        "kernels": sorted({describe_kernels(record["kernels"]) for record in records if record.get("kernels")}),
        "backends": _grouped_backends(backends),
    }


def _grouped_backends(backends: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Models with the same backend description share one row, labelled by their names (a sweep has many)."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for model, backend in backends.items():
        flat = flatten(backend)
        groups.setdefault(repr(sorted(flat.items())), ([], flat))[0].append(model)
    return {", ".join(models): flat for models, flat in groups.values()}


def describe_kernels(kernels: dict[str, Any]) -> str:
    """One line: NumPy's SIMD extensions found at run time and the kernel architecture of the BLAS NumPy calls.

    Other BLAS libraries a process loaded (SciPy's own OpenBLAS) did none of NumPy's work, so they are left out:
    two runs read as different only when the code that computed their numbers differs. Records older than
    `numpy_blas` name every BLAS library loaded.
    """
    simd = ", ".join(kernels.get("simd_found") or []) or "none beyond the baseline"
    pools = [kernels["numpy_blas"]] if kernels.get("numpy_blas") else kernels.get("blas") or []
    blas = "; ".join(f"{pool.get('internal_api')} {pool.get('version')}, kernel {pool.get('architecture')}"
                     for pool in pools) or "unknown"
    return f"NumPy SIMD: {simd} (baseline {', '.join(kernels.get('simd_baseline') or [])}); BLAS: {blas}"


def _without_hidden(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in HIDDEN_KEYS}


def provenance_section(params: Params, inputs: Any) -> dict[str, Any]:
    """Section 9: params (full YAML and the differences from the repository's params.yaml), data, software, time."""
    layout = inputs.layout
    default = default_params(layout)
    return {
        "params_yaml": yaml.safe_dump(params.mapping, sort_keys=False, default_flow_style=None, width=110),
        "differences": params_differences(params.mapping, default) if default is not None else None,
        "default_path": str(layout.params_yaml),
        "source": flatten(_without_hidden(inputs.source)),
        "stats": flatten(_without_hidden(inputs.stats)),
        "software": software_rows(inputs),
        "time": pipeline_time(inputs),
    }
