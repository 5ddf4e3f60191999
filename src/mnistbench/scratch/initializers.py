"""Initial weights: Xavier-uniform (Glorot & Bengio 2010) weights and zero biases.

Weights are stored (fan_in, fan_out) so that a row-major batch x of shape (batch, fan_in) maps as x @ w.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """Weights drawn from U(-a, a), a = sqrt(6 / (fan_in + fan_out)).

    Returns an array of shape (fan_in, fan_out) in `dtype`. The draw is made in float64 and then cast, so a
    float32 and a float64 model built from the same generator state start from the same values (rounded).
    """
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(dtype)


def layer_widths(n_inputs: int, hidden: int | Sequence[int], n_classes: int) -> list[int]:
    """[n_inputs, *hidden, n_classes]: the width of every layer boundary (hidden: an int or a list of widths)."""
    return [n_inputs, *([hidden] if isinstance(hidden, int) else hidden), n_classes]


def xavier_uniform_mlp(
    rng: np.random.Generator, n_inputs: int, hidden: int | Sequence[int], n_classes: int, dtype: np.dtype
) -> dict[str, np.ndarray]:
    """Parameters of the n_inputs-hidden...-n_classes MLP of L = len(hidden) + 1 dense layers, all in `dtype`.

    Returns {"w1": (n_inputs, h1), "b1": (h1,), ..., "wL": (h_{L-1}, n_classes), "bL": (n_classes,)}; the weights
    are drawn in order w1, w2, ... from `rng`, biases are zero. hidden 128 gives w1, b1, w2, b2 as before.
    """
    widths = layer_widths(n_inputs, hidden, n_classes)
    params: dict[str, np.ndarray] = {}
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
        params[f"w{layer}"] = xavier_uniform(rng, fan_in, fan_out, dtype)
        params[f"b{layer}"] = np.zeros(fan_out, dtype=dtype)
    return params
