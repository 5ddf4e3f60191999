"""`mnistbench sweep`: write a family of `models` entries (one recipe at several hyperparameter values) into a
params file, or remove them again, editing the text so that comments and formatting survive byte for byte.

    mnistbench sweep scratch_adam --set lr=1e-4,3e-4,1e-3 [--set weight_decay=0,1e-4] [--params PATH]
    mnistbench sweep scratch_adam --set schedule.warmup_epochs=0,1
    mnistbench sweep --clear scratch_adam

The entries go in one block at the end of `models:`, between two marker comments; `--clear` deletes that block,
so sweep-then-clear gives the original file back exactly. Each entry is the base entry's values, the swept
values and `family: BASE`, in YAML flow style on one line. A combination equal to the base entry itself is
skipped: the base is already a member of its family (an entry without `family` is its own family).

What can be swept: any key whose value in the base entry is a number (lr, epochs, batch_size and the keys of its
optimizer: momentum, weight_decay, beta1, ...), and a number inside its `schedule:` mapping, written with a dot
(schedule.warmup_epochs, schedule.min_lr, schedule.step_epochs, schedule.gamma). A key the base entry does not
have (beta1 on an sgd entry, schedule.gamma on a cosine schedule) or whose value is not a number (optimizer,
nesterov, schedule.name) is refused with one line that lists the keys that can be swept; so is a value that is not
a finite number.

Names: BASE__KEY_VALUE[__KEY_VALUE...], the key with "." -> "_", the value written with %g and "." -> "p",
"-" -> "m", "+" dropped (so that the name matches Snakemake's wildcard constraint [A-Za-z][A-Za-z0-9_]*):
lr 0.001 -> scratch_adam__lr_0p001, lr 1e-05 -> scratch_adam__lr_1em05, weight_decay 0 ->
scratch_adam__weight_decay_0, batch_size 32 -> scratch_adam__batch_size_32, schedule.warmup_epochs 1 ->
scratch_adam__schedule_warmup_epochs_1. Two values that %g writes alike (0.1 and 0.1000001) are refused.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any

import yaml

from mnistbench.errors import MnistbenchError
from mnistbench.io import atomic_path
from mnistbench.params import validate_mapping

BEGIN = "# >>> mnistbench sweep {base}: written by `mnistbench sweep`; remove with `mnistbench sweep --clear {base}`"
END = "# <<< mnistbench sweep {base}"


def parse_setting(text: str) -> tuple[str, list[Any]]:
    """"lr=1e-4,3e-4" -> ("lr", [0.0001, 0.0003]): numbers as int or float (1e-4 too), anything else as YAML."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise MnistbenchError(f"--set {text!r}: expected KEY=V1,V2,... (e.g. lr=1e-4,3e-4,1e-3)")
    return key.strip(), [_scalar(value.strip()) for value in values.split(",") if value.strip()]


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def value_label(value: Any) -> str:
    """How a value appears in a name: %g for numbers, "." -> "p", "-" -> "m", "+" dropped."""
    text = f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9_]", "", text.replace(".", "p").replace("-", "m"))


def member_name(base: str, setting: dict[str, Any]) -> str:
    return "__".join([base, *(f"{key.replace('.', '_')}_{value_label(value)}" for key, value in setting.items())])


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def sweepable_keys(entry: dict[str, Any]) -> list[str]:
    """The keys of a models entry whose values are numbers, those inside a nested mapping (schedule) dotted."""
    keys = []
    for key, value in entry.items():
        if isinstance(value, dict):
            keys += [f"{key}.{inner}" for inner, nested in value.items() if is_number(nested)]
        elif is_number(value):
            keys.append(key)
    return keys


def setting_value(entry: dict[str, Any], key: str) -> Any:
    """entry["a"]["b"] for the dotted key "a.b" (None where a part is missing)."""
    value: Any = entry
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def with_setting(entry: dict[str, Any], setting: dict[str, Any]) -> dict[str, Any]:
    """A copy of entry with each (possibly dotted) key of setting replaced."""
    result = copy.deepcopy(entry)
    for key, value in setting.items():
        *outer, last = key.split(".")
        target = result
        for part in outer:
            target = target[part]
        target[last] = value
    return result


def _check_setting(base: str, entry: dict[str, Any], key: str, values: list[Any]) -> None:
    allowed = sweepable_keys(entry)
    if key not in allowed:
        value = setting_value(entry, key)
        what = f"has no key {key}" if value is None else f"has {key}: {value!r}, not a number"
        raise MnistbenchError(f"sweep: --set {key}: models.{base} ({_describe(entry)}) {what}; the keys it can "
                              f"sweep: {', '.join(allowed)}")
    if not values:
        raise MnistbenchError(f"sweep: --set {key}: no values")
    for value in values:
        if not is_number(value) or not math.isfinite(value):
            raise MnistbenchError(f"sweep: --set {key}: {value!r} is not a finite number (write e.g. {key}=0,1e-4)")


def _describe(entry: dict[str, Any]) -> str:
    schedule = entry.get("schedule")
    text = f"optimizer {entry.get('optimizer')}"
    return text + (f", schedule {schedule.get('name')}" if isinstance(schedule, dict) else "")


def sweep_entries(base: str, runs: dict[str, Any], settings: list[tuple[str, list[Any]]]) -> dict[str, dict]:
    """The new entries: one per combination of the settings' values, except the base's own values."""
    if base not in runs:
        raise MnistbenchError(f"sweep: no entry {base!r} under models (there are: {', '.join(runs)})")
    entry = runs[base]
    if "family" in entry and entry["family"] != base:
        raise MnistbenchError(f"sweep: models.{base} belongs to family {entry['family']!r}: sweep a base entry")
    for key, values in settings:
        _check_setting(base, entry, key, values)
    keys = [key for key, _ in settings]
    if len(set(keys)) != len(keys):
        raise MnistbenchError(f"sweep: a key is set twice in {keys}")
    entries: dict[str, dict] = {}
    for combination in itertools.product(*(values for _, values in settings)):
        setting = dict(zip(keys, combination, strict=True))
        if all(setting_value(entry, key) == value for key, value in setting.items()):
            continue
        name = member_name(base, setting)
        if name in entries:
            raise MnistbenchError(f"sweep: two combinations give the same entry name {name} (a value repeated, or "
                                  "two values alike to 6 significant digits): give each value once")
        entries[name] = {**with_setting(entry, setting), "family": base}
    clash = sorted(set(entries) & set(runs))
    if clash:
        raise MnistbenchError(f"sweep: entries {clash} exist already outside this sweep's block")
    return entries


def _flow(entry: dict[str, Any]) -> str:
    return yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _models_span(lines: list[str], path: Path) -> tuple[int, str]:
    """(index after the last entry line of the top-level `models:` mapping, the indentation of its entries)."""
    start = next((index for index, line in enumerate(lines) if re.match(r"models:\s*(#.*)?$", line)), None)
    if start is None:
        raise MnistbenchError(f"sweep: {path} has no block-style top-level `models:` mapping to add entries to")
    end, indent = start + 1, None
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        if not line[0].isspace():
            break
        # An indented comment belongs to `models:` (another family's end marker): a new block goes after it,
        # never inside another block.
        end = index + 1
        if not line.lstrip().startswith("#"):
            indent = indent or line[: len(line) - len(line.lstrip())]
    return end, indent or "  "


def block_pattern(base: str) -> re.Pattern[str]:
    """The block `sweep` writes for `base`: marker line, entry lines, end marker (with or without final newline)."""
    begin, end = (re.escape(marker.format(base=base)) for marker in (BEGIN, END))
    return re.compile(rf"(\n?)^([ \t]*){begin}\n(?:.*\n)*?\2{end}[ \t]*(\n|\Z)", re.MULTILINE)


def clear_text(text: str, base: str) -> str:
    """`text` without the sweep block of `base` (unchanged if there is none)."""
    def remove(match: re.Match[str]) -> str:
        # A block that ends the file without a newline was written after an added newline: give that one back.
        return match.group(1) if match.group(3) else ""

    return block_pattern(base).sub(remove, text, count=1)


def sweep_text(text: str, base: str, entries: dict[str, dict], path: Path) -> str:
    """`text` with the sweep block of `base` holding `entries` at the end of `models:` (replacing an old block)."""
    text = clear_text(text, base)
    lines = text.splitlines(keepends=True)
    end, indent = _models_span(lines, path)
    block = [indent + BEGIN.format(base=base)]
    block += [f"{indent}{name}: {_flow(entry)}" for name, entry in entries.items()]
    block += [indent + END.format(base=base)]
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
        lines[end:end] = ["\n".join(block)]
    else:
        lines[end:end] = [line + "\n" for line in block]
    return "".join(lines)


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    if not path.is_file():
        raise MnistbenchError(f"params file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    return text, yaml.safe_load(text)


def _write_checked(path: Path, text: str) -> dict[str, Any]:
    """Validate the new text as params, then replace the file atomically; returns the new mapping."""
    mapping = yaml.safe_load(text)
    validate_mapping(mapping, where=f"{path} (after the sweep edit; the file is unchanged)")
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return mapping


def run_sweep(path: Path, base: str, settings: list[str]) -> list[str]:
    """Write the family of `base` into the params file at `path`; returns the new entries' names."""
    text, mapping = _read(path)
    runs = {name: run for name, run in mapping["models"].items()
            if name not in _block_members(text, base)}
    entries = sweep_entries(base, runs, [parse_setting(setting) for setting in settings])
    if not entries:
        raise MnistbenchError(f"sweep: every combination equals models.{base} itself: nothing to add")
    _write_checked(path, sweep_text(text, base, entries, path))
    return list(entries)


def run_clear(path: Path, base: str) -> list[str]:
    """Remove the family block of `base` from the params file; returns the removed entries' names."""
    text, _ = _read(path)
    removed = _block_members(text, base)
    if removed:
        _write_checked(path, clear_text(text, base))
    return removed


def _block_members(text: str, base: str) -> list[str]:
    match = block_pattern(base).search(text)
    if not match:
        return []
    return [line.split(":")[0].strip() for line in match.group(0).strip("\n").splitlines()[1:-1]]
