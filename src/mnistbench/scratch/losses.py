"""Softmax with cross-entropy, fused into one numerically stable operation (log-sum-exp).

Shifting each row of logits by its maximum before exponentiating keeps every exp() in (0, 1], so the loss
and its gradient stay finite for logits as large as +-1e4 (where a naive softmax overflows).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities. logits: (n, k) float -> (n, k), same dtype."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of softmax(logits) against integer labels, computed and summed in float64.

    logits: (n, k) float32 or float64; labels: (n,) int in [0, k). Returns a Python float.
    """
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, inplace: bool = False
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over the batch and its gradient with respect to the logits.

    logits: (n, k) float; labels: (n,) int in [0, k). With inplace=True the logits buffer is overwritten by
    the gradient (the training loop's choice; no new (n, k) array per step). Row reductions are several
    times faster when the logits are Fortran-ordered (as the network's buffer is), for any layout the
    result is the same.
    Returns (loss as a Python float, summed in float64; dlogits (n, k) = (softmax(logits) - onehot) / n).
    """
    n = len(labels)
    rows = np.arange(n)
    # ufunc.reduce rather than np.max / np.sum: same result, without their Python wrappers (every step)
    probs = np.subtract(logits, np.maximum.reduce(logits, axis=1, keepdims=True), out=logits if inplace else None)
    true_shifted = probs[rows, labels]  # a copy (fancy indexing), taken before probs is overwritten
    np.exp(probs, out=probs)
    sums = np.add.reduce(probs, axis=1, keepdims=True)
    loss = float(np.add.reduce(np.log(sums[:, 0], dtype=np.float64) - true_shifted)) / n
    np.divide(probs, sums * n, out=probs)  # softmax and the mean's 1/n in one pass
    probs[rows, labels] -= 1.0 / n
    return loss, probs


def softmax_cross_entropy_fused(
    logits: np.ndarray, labels: np.ndarray, kernels: ModuleType, work: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, np.ndarray]:
    """softmax_cross_entropy(logits, labels, inplace=True), bit for bit, in five calls instead of about fifteen:
    the compiled kernels (scratch/kernels.c, `loss_shift` and `loss_finish`) do the row maxima, the shift, the
    true-class gather, the division and the one-hot subtraction, and NumPy keeps what it computes its own way: the
    exp, the row sums and the float64 log (tests/test_scratch_fused.py holds the two to each other).

    logits: (n, k) Fortran-ordered, overwritten by the gradient; labels: (n,) int64 in [0, k);
    work: (true_shifted (n,) and sums (n,) in the logits' dtype, log_sums (n,) float64), overwritten.
    """
    true_shifted, sums, log_sums = work
    kernels.loss_shift(logits, labels, true_shifted)
    np.exp(logits, out=logits)
    np.add.reduce(logits, axis=1, out=sums)
    np.log(sums, out=log_sums, dtype=np.float64)
    return kernels.loss_finish(logits, labels, sums, log_sums, true_shifted) / len(labels), logits
