"""The dense (fully connected) layer as pure functions, cs231n style: forward returns (out, cache),
backward takes (dout, cache) and returns the gradients; and a hidden layer, a dense layer with its activation,
whose bias add and bias gradient run beside the activation (the passes `hidden_passes` picks).

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), out (batch, n_out); every array in one float dtype.
Optional `out=` / `dx=` buffers let the training loop reuse memory between steps; without them new arrays are made.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import ModuleType

import numpy as np

from mnistbench.scratch.activations import ACTIVATIONS

DenseCache = tuple[np.ndarray, np.ndarray]
HiddenCache = tuple[np.ndarray, np.ndarray, np.ndarray]
# (pre (batch, n_out), b (n_out,)) -> (out, activation cache), pre overwritten by out
BiasActivation = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# (dout (batch, n_out), activation cache, db (n_out,) written) -> dpre, dout overwritten by dpre
ActivationBiasBackward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def dense_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, bias_add: Callable | None = None
) -> tuple[np.ndarray, DenseCache]:
    """out = x @ w + b.

    x: (batch, n_in); w: (n_in, n_out); b: (n_out,); out (optional buffer): (batch, n_out).
    bias_add: None for NumPy's out += b, or the compiled kernels' bias_add(out, b) (scratch/kernels.c: the same
    bits, for a Fortran-ordered out, as the network's logits buffer is).
    Returns (out (batch, n_out), cache (x, w) for dense_backward).
    """
    out = np.matmul(x, w, out=out)
    if bias_add is None:
        out += b
    else:
        bias_add(out, b)
    return out, (x, w)


def dense_backward(
    dout: np.ndarray,
    cache: DenseCache,
    dw: np.ndarray | None = None,
    db: np.ndarray | None = None,
    need_dx: bool = True,
    dx: np.ndarray | None = None,
    bias_grad: Callable | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of a dense layer given the upstream gradient dout (batch, n_out).

    Returns (dx (batch, n_in) or None when need_dx is False, dw (n_in, n_out), db (n_out,)).
    dw, db and dx may be given as buffers to write into (C-contiguous, the shapes above).
    bias_grad: None for NumPy's column sums, or the compiled kernels' bias_grad(dout, db) (the same bits, for a
    Fortran-ordered dout and a given db).
    """
    x, w = cache
    dw = np.matmul(x.T, dout, out=dw)
    if bias_grad is None:
        db = np.add.reduce(dout, axis=0, out=db)  # np.sum without its Python wrapper (called every step)
    else:
        bias_grad(dout, db)
    dx = np.matmul(dout, w.T, out=dx) if need_dx else None
    return dx, dw, db


def hidden_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, bias_activation: BiasActivation, out: np.ndarray | None = None
) -> tuple[np.ndarray, HiddenCache]:
    """activation(x @ w + b): dense_forward, then the activation in place, with the bias add in the activation's pass.

    x: (batch, n_in); w: (n_in, n_out); b: (n_out,); out (optional buffer): (batch, n_out), C-contiguous.
    Returns (out (batch, n_out), cache (x, w, the activation's cache) for hidden_backward).
    """
    out, activation_cache = bias_activation(np.matmul(x, w, out=out), b)
    return out, (x, w, activation_cache)


def hidden_backward(
    dout: np.ndarray, cache: HiddenCache, backward: ActivationBiasBackward, dw: np.ndarray, db: np.ndarray,
    need_dx: bool = True, dx: np.ndarray | None = None,
) -> np.ndarray | None:
    """Gradients of hidden_forward given dout (batch, n_out), the gradient at its output (overwritten).

    Writes dw (n_in, n_out) and db (n_out,); returns dx (batch, n_in) (into the buffer dx when given), or None when
    need_dx is False.
    """
    x, w, activation_cache = cache
    dpre = backward(dout, activation_cache, db)
    np.matmul(x.T, dpre, out=dw)
    return np.matmul(dpre, w.T, out=dx) if need_dx else None


def bias_activation(pre: np.ndarray, b: np.ndarray, forward: Callable) -> tuple[np.ndarray, np.ndarray]:
    """The reference: pre += b, then `forward` (activations.py) in place. Returns (out, its cache)."""
    pre += b
    return forward(pre, inplace=True)


def activation_bias_backward(dout: np.ndarray, cache: np.ndarray, db: np.ndarray, backward: Callable) -> np.ndarray:
    """The reference: `backward` (activations.py) in place, then db = the sum of its rows. Returns dpre (dout)."""
    dpre = backward(dout, cache, inplace=True)
    np.add.reduce(dpre, axis=0, out=db)
    return dpre


def bias_relu_fused(pre: np.ndarray, b: np.ndarray, kernels: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """bias_activation with relu_forward, bit for bit, in one compiled pass (scratch/kernels.c `bias_relu`).

    pre: (batch, n_out) C-contiguous, overwritten; b: (n_out,). Returns (out, cache), both pre.
    """
    kernels.bias_relu(pre, b)
    return pre, pre


def relu_bias_backward_fused(dout: np.ndarray, cache: np.ndarray, db: np.ndarray, kernels: ModuleType) -> np.ndarray:
    """activation_bias_backward with relu_backward, bit for bit, in one compiled pass (`relu_backward_bias_grad`).

    dout, cache (the forward output): (batch, n_out) C-contiguous, dout overwritten; db (n_out,) written.
    """
    kernels.relu_backward_bias_grad(dout, cache, db)
    return dout


def hidden_passes(activation: str, kernels: ModuleType | None) -> tuple[BiasActivation, ActivationBiasBackward]:
    """(bias_activation, activation_bias_backward) for a hidden layer of `activation` (a key of ACTIVATIONS): the
    compiled ReLU passes where the kernels are built and the activation is ReLU (the same bits), else the reference
    around the activation's forward and backward."""
    forward, backward = ACTIVATIONS[activation]
    if kernels is not None and activation == "relu":
        return partial(bias_relu_fused, kernels=kernels), partial(relu_bias_backward_fused, kernels=kernels)
    return partial(bias_activation, forward=forward), partial(activation_bias_backward, backward=backward)
