"""Initial weights: Xavier-uniform (Glorot & Bengio 2010) weights and zero biases.

Weights are stored (fan_in, fan_out) so that a row-major batch x of shape (batch, fan_in) maps as x @ w.
"""

from __future__ import annotations

import math

import numpy as np


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """Weights drawn from U(-a, a), a = sqrt(6 / (fan_in + fan_out)).

    Returns an array of shape (fan_in, fan_out) in `dtype`. The draw is made in float64 and then cast, so a
    float32 and a float64 model built from the same generator state start from the same values (rounded).
    """
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(dtype)


def xavier_uniform_mlp(
    rng: np.random.Generator, n_inputs: int, hidden: int, n_classes: int, dtype: np.dtype
) -> dict[str, np.ndarray]:
    """Parameters of the n_inputs-hidden-n_classes MLP, all in `dtype`.

    Returns {"w1": (n_inputs, hidden), "b1": (hidden,), "w2": (hidden, n_classes), "b2": (n_classes,)};
    w1 is drawn before w2, biases are zero.
    """
    return {
        "w1": xavier_uniform(rng, n_inputs, hidden, dtype),
        "b1": np.zeros(hidden, dtype=dtype),
        "w2": xavier_uniform(rng, hidden, n_classes, dtype),
        "b2": np.zeros(n_classes, dtype=dtype),
    }
