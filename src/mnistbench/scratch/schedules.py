"""Learning-rate schedules: the learning rate of every optimizer step of a run, computed up front.

A schedule is the mapping of a `models` entry's `schedule:` key, stepped once per optimizer step. With
N = steps_per_epoch * epochs steps numbered t = 0 .. N - 1 and base learning rate lr:

- {name: constant}: lr_t = lr.
- {name: step, step_epochs: K, gamma: G}: lr_t = lr * G^k, k = floor(t / (K * steps_per_epoch)); G^k is formed by
  k successive multiplications (lr, lr * G, (lr * G) * G, ...), as torch.optim.lr_scheduler.StepLR forms it.
- {name: cosine, warmup_epochs: W, min_lr: M}: with S = W * steps_per_epoch warmup steps and D = max(N - 1 - S, 1),
  lr_t = lr * (t + 1) / (S + 1) for t < S (linear warmup; LinearLR(start_factor=1 / (S + 1), total_iters=S)),
  lr_t = M + (lr - M) * (1 + cos(pi * (t - S) / D)) / 2 for t >= S (CosineAnnealingLR(T_max=D, eta_min=M)):
  the peak lr at t = S, M at the last step t = N - 1 (when the decay has at least two steps).

torch's schedulers update the learning rate recursively, step by step; the closed forms above agree with them
to rounding at every step (tests/test_schedules.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over n_rows rows: ceil(n_rows / batch_size); batch_size 0 = full batch (1)."""
    return 1 if batch_size == 0 else math.ceil(n_rows / batch_size)


def learning_rates(schedule: Mapping[str, Any], lr: float, steps_per_epoch: int, epochs: int) -> np.ndarray:
    """The learning rate of every step t = 0 .. steps_per_epoch * epochs - 1: float64 of that shape."""
    total = steps_per_epoch * epochs
    name = schedule["name"]
    if name == "constant":
        return np.full(total, lr, dtype=np.float64)
    if name == "step":
        return _step_decay(lr, schedule["gamma"], schedule["step_epochs"] * steps_per_epoch, total)
    if name == "cosine":
        return _warmup_cosine(lr, schedule["min_lr"], schedule["warmup_epochs"] * steps_per_epoch, total)
    raise ValueError(f"unknown schedule {name!r}: constant, step or cosine")


def _step_decay(lr: float, gamma: float, period: int, total: int) -> np.ndarray:
    """lr times gamma once every `period` steps, the products formed one multiplication at a time."""
    levels = [lr]
    for _ in range((total - 1) // period):
        levels.append(levels[-1] * gamma)
    return np.asarray(levels, dtype=np.float64)[np.arange(total) // period]


def _warmup_cosine(lr: float, min_lr: float, warmup: int, total: int) -> np.ndarray:
    """Linear warmup over `warmup` steps up to lr at step `warmup`, then cosine decay to min_lr at the last step."""
    t = np.arange(total, dtype=np.float64)
    decay_steps = max(total - 1 - warmup, 1)
    cosine = min_lr + (lr - min_lr) * (1.0 + np.cos(math.pi * (t - warmup) / decay_steps)) / 2.0
    return np.where(t < warmup, lr * (t + 1.0) / (warmup + 1.0), cosine)
