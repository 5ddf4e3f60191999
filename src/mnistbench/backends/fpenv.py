"""Subnormal floats flushed to zero while a backend trains, on x86-64 Linux (the FTZ and DAZ bits of MXCSR).

Where a pixel stays off, Adam's first moment shrinks by beta1 at every step, so thousands of its entries pass through
float32's subnormal range (below 1.2e-38) in every epoch. An Intel core takes a microcode assist for each SIMD
operation that meets one: a batch-32 Adam epoch on 55,000 rows took 0.92 s on the 2-core Intel Xeon of 2026-12-02,
and 0.47 s with FTZ and DAZ. A value that small moves no parameter by a unit in its last place, so the default
recipes train to the same bytes either way (tests/test_scratch_bytes.py holds the scratch weights to the code before;
the default pipeline's dvc.lock kept every weight hash). Both backends train under it, so the comparison stays fair.

Only the calling thread's register changes (the training loop's thread, where one-thread BLAS and torch also run),
for the duration of the context, and it is restored on leaving. Elsewhere (other machines or C libraries) nothing
changes, and the training record says so (`DENORMALS`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

FLUSH_TO_ZERO, DENORMALS_ARE_ZERO = 0x8000, 0x0040  # MXCSR bits 15 and 6
SUPPORTED = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")
# What a training record states about subnormals (the backends' describe()).
DENORMALS = "flushed to zero while training (MXCSR FTZ and DAZ)" if SUPPORTED else "IEEE gradual underflow"


class _FloatEnvironment(ctypes.Structure):
    """fenv_t of glibc (and musl) on x86-64: the x87 environment, 28 bytes, then MXCSR."""

    _fields_ = [("x87", ctypes.c_uint16 * 14), ("mxcsr", ctypes.c_uint32)]


@cache
def _libm() -> ctypes.CDLL | None:
    """The library holding fegetenv and fesetenv: the process itself, which has the C maths library loaded (Python
    links it), else the one find_library names. find_library runs `ldconfig -p` in a subprocess (~5 ms a job)."""
    if not SUPPORTED:
        return None
    process = ctypes.CDLL(None)
    if hasattr(process, "fegetenv") and hasattr(process, "fesetenv"):
        return process
    name = ctypes.util.find_library("m")
    return ctypes.CDLL(name) if name else None


@contextmanager
def denormals_flushed() -> Iterator[bool]:
    """Within it the calling thread flushes subnormal results to zero and reads subnormal inputs as zero; yields
    whether it does (False where it is not supported: nothing changes there)."""
    libm = _libm()
    saved = _FloatEnvironment()
    if libm is None or libm.fegetenv(ctypes.byref(saved)) != 0:
        yield False
        return
    flushed = _FloatEnvironment.from_buffer_copy(saved)
    flushed.mxcsr |= FLUSH_TO_ZERO | DENORMALS_ARE_ZERO
    if libm.fesetenv(ctypes.byref(flushed)) != 0:
        yield False
        return
    try:
        yield True
    finally:
        libm.fesetenv(ctypes.byref(saved))
