"""Activations as pure functions: forward returns (out, cache), backward takes (dout, cache).

Every activation here caches its own output: each derivative is a function of the output alone
(relu: out > 0; tanh: 1 - out^2; sigmoid: out (1 - out)), so the pre-activation can be overwritten in place.
`ACTIVATIONS` maps the names of params.yaml's `network.activation` to (forward, backward).
"""

from __future__ import annotations

from collections.abc import Callable

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


def tanh_forward(x: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """out = tanh(x), elementwise. x: (batch, n) float (overwritten with inplace=True). Returns (out, cache = out)."""
    out = np.tanh(x, out=x if inplace else None)
    return out, out


def tanh_backward(dout: np.ndarray, cache: np.ndarray, inplace: bool = False) -> np.ndarray:
    """dx = dout * (1 - out^2), as torch's tanh_backward. dout, cache (the forward output): (batch, n)."""
    derivative = np.multiply(cache, cache)
    np.subtract(1.0, derivative, out=derivative)
    return np.multiply(dout, derivative, out=dout if inplace else None)


def sigmoid_forward(x: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """out = 1 / (1 + exp(-x)), elementwise. x: (batch, n) float (overwritten with inplace=True).

    For x below about -88 (float32) or -709 (float64) exp(-x) overflows to inf and out is exactly 0, its limit;
    the overflow warning is silenced for that reason. Returns (out, cache = out).
    """
    out = np.negative(x, out=x if inplace else None)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: np.ndarray, inplace: bool = False) -> np.ndarray:
    """dx = dout * (1 - out) * out, as torch's sigmoid_backward. dout, cache (the forward output): (batch, n)."""
    derivative = np.subtract(1.0, cache)
    derivative *= cache
    return np.multiply(dout, derivative, out=dout if inplace else None)


Forward = Callable[..., tuple[np.ndarray, np.ndarray]]
Backward = Callable[..., np.ndarray]
ACTIVATIONS: dict[str, tuple[Forward, Backward]] = {
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
}
