"""The ReLU activation as pure functions: forward returns (out, cache), backward takes (dout, cache)."""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """out = max(x, 0), elementwise.

    x: (batch, n) float. With inplace=True, x itself is overwritten and returned (saves a copy in training).
    Returns (out (batch, n), cache: out itself, whose positive entries mark where the gradient passes).
    """
    out = np.maximum(x, 0, out=x if inplace else None)
    return out, out


def relu_backward(dout: np.ndarray, cache: np.ndarray, inplace: bool = False) -> np.ndarray:
    """dx = dout where the forward output was positive, else 0 (the subgradient at 0 is taken as 0).

    dout: (batch, n) float; cache: the forward output (batch, n). With inplace=True dout is overwritten.
    Returns dx (batch, n).
    """
    return np.multiply(dout, cache > 0, out=dout if inplace else None)
