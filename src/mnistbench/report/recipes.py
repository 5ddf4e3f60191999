"""How the report writes a training recipe: the optimizer, its keys that differ from torch.optim's defaults, the
learning-rate schedule, the batch and the epochs, e.g.
"scratch AdamW lr 1e-3, wd 0.1, cosine (warmup 1 ep, min 0), batch 128, 15 epochs".
"""

from __future__ import annotations

from typing import Any

OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}

# torch.optim's defaults (the signatures of torch.optim.SGD, Adam, AdamW, RMSprop, Adagrad), under the params' key
# names: a key at its default is left out of the recipe. AdamW's weight decay defaults to 0.01, not 0.
TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False, "weight_decay": 0.0},
    "adagrad": {"eps": 1e-10, "weight_decay": 0.0, "initial_accumulator_value": 0.0},
}

# How a key is written when it differs from its default (booleans are written by their name when true).
KEY_LABELS = {"weight_decay": "wd", "initial_accumulator_value": "initial accumulator", "nesterov": "Nesterov",
              "centered": "centered"}


def number(value: Any) -> str:
    """Short and exact to 4 significant digits: 0.001 -> "1e-3", 3e-4 -> "3e-4", 0.9 -> "0.9", 0 -> "0"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.4g}"


def optimizer_text(run: dict[str, Any]) -> str:
    """"AdamW lr 1e-3, wd 0.1": the optimizer's name, its lr, then each key that differs from torch's default."""
    optimizer = run["optimizer"]
    parts = [f"{OPTIMIZER_NAMES.get(optimizer, optimizer)} lr {number(run['lr'])}"]
    for key, default in TORCH_DEFAULTS.get(optimizer, {}).items():
        value = run.get(key, default)
        if value == default:
            continue
        label = KEY_LABELS.get(key, key)
        parts.append((label if value else f"no {label}") if isinstance(value, bool) else f"{label} {number(value)}")
    return ", ".join(parts)


def schedule_text(schedule: dict[str, Any]) -> str:
    """"constant", "step (x0.1 every 5 ep)", "cosine (warmup 1 ep, min 0)" or "cosine (no warmup, min 1e-4)"."""
    name = schedule["name"]
    if name == "step":
        return f"step (x{number(schedule['gamma'])} every {number(schedule['step_epochs'])} ep)"
    if name == "cosine":
        warmup = schedule["warmup_epochs"]
        start = f"warmup {number(warmup)} ep" if warmup else "no warmup"
        return f"cosine ({start}, min {number(schedule['min_lr'])})"
    others = ", ".join(f"{key} {number(value)}" for key, value in schedule.items() if key != "name")
    return f"{name} ({others})" if others else name


def is_scheduled(run: dict[str, Any]) -> bool:
    """Whether the learning rate changes during training (any schedule but constant)."""
    return run.get("schedule", {"name": "constant"})["name"] != "constant"


def recipe_text(run: dict[str, Any]) -> str:
    """The whole recipe of one models entry, as the summary table's recipe column shows it."""
    batch = "full batch" if run["batch_size"] == 0 else f"batch {run['batch_size']}"
    parts = [f"{run['impl']} {optimizer_text(run)}"]
    if "schedule" in run:
        parts.append(schedule_text(run["schedule"]))
    return ", ".join([*parts, batch, f"{run['epochs']} epochs"])
