"""One-loop optimizer kernels (numba): the fast path of scratch/optim.py, held to its NumPy reference bit for bit.

Each kernel walks the parameters once, doing per element exactly the operations of the reference's NumPy passes,
in their order, each rounded to the array's dtype: every Python-float scalar is cast to that dtype first, as
NumPy 2 casts a Python float meeting a float32 array (NEP 50). fastmath stays off, so LLVM neither contracts a
multiply and an add into an FMA nor reorders anything; sqrt and division are correctly rounded in SIMD and
scalar code alike. Hence the same bits as the reference, in float32 and float64 (tests/test_scratch_fused.py).

Arrays: 1-D, C-contiguous, one float dtype, all the same length (a flat view of one parameter tensor, or the
network's whole parameter vector); updated in place. A state array the settings do not use is passed as any
array of that dtype and never read.

The boolean settings are compile-time constants: each `*_kernel(flags)` builds its loop as a closure over them,
once per process, so every combination is a loop without branches, which LLVM vectorizes. (With the flags as
run-time arguments it vectorized some combinations and not others, up to 6x slower; `numba.literally`
specializes too, but sends every call through Python's dispatcher, ~40 ms.) error_model="numpy" lets division
and sqrt vectorize (no Python ZeroDivisionError check). Kernels compile on first call, for the dtype and settings
they meet, so a job compiles only what its optimizer uses; cache=True keeps the machine code under __pycache__
(or numba's user cache dir when that is read-only), one entry per set of closure constants.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import numba

SCIPY_BLAS = "scipy.linalg.cython_blas"


@contextmanager
def without_scipy_blas() -> Iterator[None]:
    """Hide SciPy's BLAS bindings while numba sets up its compiler (on the first compile or cache load).

    numba probes for them then, to offer np.dot inside compiled code, which these kernels do not use; the probe
    imports scipy.linalg and loads SciPy's own OpenBLAS beside NumPy's: ~0.2 s of the ~0.6 s numba costs a job,
    and a second BLAS library in the process's provenance. With the module set to None the probe's import fails
    and numba records "no BLAS". Nothing is hidden if SciPy's bindings are loaded already; the entry is removed
    afterwards, so a later `import scipy.linalg` works as usual.
    """
    if SCIPY_BLAS in sys.modules:
        yield
        return
    sys.modules[SCIPY_BLAS] = None
    try:
        yield
    finally:
        if sys.modules.get(SCIPY_BLAS, 0) is None:
            del sys.modules[SCIPY_BLAS]


_jit = numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)


@cache
def sgd_kernel(decay: bool, use_momentum: bool, nesterov: bool, first_step: bool) -> Callable[..., None]:
    """SGD (scratch/optim.py SGD): (param, grad, velocity, lr, momentum, weight_decay); velocity unused without
    momentum."""

    @_jit
    def sgd_step(param, grad, velocity, lr, momentum, weight_decay) -> None:  # noqa: ANN001
        one = param.dtype.type
        lr, momentum, weight_decay = one(lr), one(momentum), one(weight_decay)
        for i in range(param.size):
            direction = param[i] * weight_decay + grad[i] if decay else grad[i]
            if use_momentum:
                buf = direction if first_step else velocity[i] * momentum + direction
                velocity[i] = buf
                direction = buf * momentum + direction if nesterov else buf
            param[i] = param[i] - direction * lr

    return sgd_step


@cache
def adam_kernel(decay: bool, decoupled: bool) -> Callable[..., None]:
    """Adam / AdamW on the scaled moments (scratch/optim.py Adam): (param, grad, first, second, beta1, beta2,
    denominator_shift, step_scale, weight_decay, shrink); decoupled is AdamW's param *= shrink first."""

    @_jit
    def adam_step(param, grad, first, second, beta1, beta2, denominator_shift, step_scale,  # noqa: ANN001
                  weight_decay, shrink) -> None:
        one = param.dtype.type
        beta1, beta2, weight_decay, shrink = one(beta1), one(beta2), one(weight_decay), one(shrink)
        denominator_shift, step_scale = one(denominator_shift), one(step_scale)
        for i in range(param.size):
            if decoupled:
                param[i] = param[i] * shrink
            g = param[i] * weight_decay + grad[i] if decay else grad[i]
            m = first[i] * beta1 + g
            first[i] = m
            v = second[i] * beta2 + g * g
            second[i] = v
            param[i] = param[i] - m / (math.sqrt(v) + denominator_shift) * step_scale

    return adam_step


@cache
def rmsprop_kernel(decay: bool, use_momentum: bool, centered: bool) -> Callable[..., None]:
    """RMSprop (scratch/optim.py RMSprop): (param, grad, square, average, velocity, lr, alpha, eps, momentum,
    weight_decay); average is used only when centered, velocity only with momentum."""

    @_jit
    def rmsprop_step(param, grad, square, average, velocity, lr, alpha, eps, momentum,  # noqa: ANN001
                     weight_decay) -> None:
        one = param.dtype.type
        rest = one(1.0 - alpha)  # as the reference: 1 - alpha in float64, then cast
        lr, alpha, eps, momentum, weight_decay = one(lr), one(alpha), one(eps), one(momentum), one(weight_decay)
        for i in range(param.size):
            g = param[i] * weight_decay + grad[i] if decay else grad[i]
            s = square[i] * alpha + g * rest * g
            square[i] = s
            if centered:
                a = average[i] + (g - average[i]) * rest
                average[i] = a
                denominator = math.sqrt(s - a * a) + eps
            else:
                denominator = math.sqrt(s) + eps
            update = g / denominator
            if use_momentum:
                update = velocity[i] * momentum + update
                velocity[i] = update
            param[i] = param[i] - update * lr

    return rmsprop_step


@cache
def adagrad_kernel(decay: bool) -> Callable[..., None]:
    """Adagrad (scratch/optim.py Adagrad): (param, grad, squared_sum, lr, eps, weight_decay)."""

    @_jit
    def adagrad_step(param, grad, squared_sum, lr, eps, weight_decay) -> None:  # noqa: ANN001
        one = param.dtype.type
        lr, eps, weight_decay = one(lr), one(eps), one(weight_decay)
        for i in range(param.size):
            g = param[i] * weight_decay + grad[i] if decay else grad[i]
            s = squared_sum[i] + g * g
            squared_sum[i] = s
            param[i] = param[i] - g / (math.sqrt(s) + eps) * lr

    return adagrad_step
