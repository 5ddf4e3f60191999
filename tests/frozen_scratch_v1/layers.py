"""The dense (fully connected) layer as pure functions, cs231n style: forward returns (out, cache),
backward takes (dout, cache) and returns the gradients.

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), out (batch, n_out); every array in one float dtype.
Optional `out=` buffers let the training loop reuse memory between steps; without them new arrays are made.
"""

from __future__ import annotations

import numpy as np

DenseCache = tuple[np.ndarray, np.ndarray]


def dense_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, DenseCache]:
    """out = x @ w + b.

    x: (batch, n_in); w: (n_in, n_out); b: (n_out,); out (optional buffer): (batch, n_out), C-contiguous.
    Returns (out (batch, n_out), cache (x, w) for dense_backward).
    """
    out = np.matmul(x, w, out=out)
    out += b
    return out, (x, w)


def dense_backward(
    dout: np.ndarray,
    cache: DenseCache,
    dw: np.ndarray | None = None,
    db: np.ndarray | None = None,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of a dense layer given the upstream gradient dout (batch, n_out).

    Returns (dx (batch, n_in) or None when need_dx is False, dw (n_in, n_out), db (n_out,)).
    dw and db may be given as buffers to write into (C-contiguous, the shapes above).
    """
    x, w = cache
    dw = np.matmul(x.T, dout, out=dw)
    db = np.add.reduce(dout, axis=0, out=db)  # np.sum without its Python wrapper (called every step)
    dx = np.matmul(dout, w.T) if need_dx else None
    return dx, dw, db
