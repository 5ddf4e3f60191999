"""Subnormals flushed to zero while a backend trains (x86-64 Linux), and only then."""

from __future__ import annotations

import numpy as np
import pytest

from mnistbench.backends import fpenv
from mnistbench.backends.scratch import ScratchBackend
from mnistbench.params import load_params
from mnistbench.training import initial_weights

SUBNORMAL = np.float32(1e-39)  # below float32's smallest normal, 1.18e-38


def gradual_underflow() -> bool:
    """Whether this thread computes with subnormals (IEEE) rather than flushing them to zero (to zero, the product
    of a subnormal input and of a subnormal result alike)."""
    return bool(np.array([SUBNORMAL], np.float32)[0] * np.float32(2.0) != 0)


def test_within_the_context_subnormals_are_zero_and_after_it_they_are_back():
    assert gradual_underflow()
    with fpenv.denormals_flushed() as flushed:
        assert flushed == fpenv.SUPPORTED
        assert gradual_underflow() is not flushed
    assert gradual_underflow()


def test_the_register_is_restored_when_the_body_raises():
    with pytest.raises(RuntimeError), fpenv.denormals_flushed():
        raise RuntimeError("a failing epoch")
    assert gradual_underflow()


@pytest.mark.skipif(not fpenv.SUPPORTED, reason="FTZ/DAZ is set on x86-64 Linux only")
def test_the_scratch_backend_trains_with_subnormals_flushed_and_says_so(monkeypatch):
    params = load_params("params.yaml")
    run = params.models["scratch_adam"]
    rows = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    backend = ScratchBackend(run, initial_weights(0, params.network), rows, np.arange(64) % 10, np.float32)
    seen = []
    step = backend.optimizer.step
    monkeypatch.setattr(backend.optimizer, "step", lambda grads: (seen.append(gradual_underflow()), step(grads)))
    backend.train_epoch([np.arange(32), np.arange(32, 64)])
    assert seen == [False, False]
    assert gradual_underflow()
    assert backend.describe()["denormals"] == fpenv.DENORMALS


@pytest.mark.skipif(not fpenv.SUPPORTED, reason="FTZ/DAZ is set on x86-64 Linux only")
def test_the_floating_point_functions_are_found_without_a_library_search(monkeypatch):
    # ctypes.util.find_library runs `ldconfig -p` in a subprocess (~5 ms of every train job); fegetenv and fesetenv
    # are in the process already (Python links the C maths library).
    def no_search(name: str) -> None:
        raise AssertionError(f"find_library({name!r}) was called")

    monkeypatch.setattr(fpenv.ctypes.util, "find_library", no_search)
    fpenv._libm.cache_clear()
    try:
        with fpenv.denormals_flushed() as flushed:
            assert flushed
            assert not gradual_underflow()
    finally:
        fpenv._libm.cache_clear()
    assert gradual_underflow()
