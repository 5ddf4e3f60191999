"""The NumPy-only unpickler: arrays load, anything that names another callable is refused before it runs."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from mnistbench.data.safe_pickle import load_numpy_pickle


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numpy_arrays_and_scalars_load(protocol):
    payload = ((np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2], dtype=np.int64)), np.int64(7))
    loaded = load_numpy_pickle(pickle.dumps(payload, protocol=protocol))
    np.testing.assert_array_equal(loaded[0][0], payload[0][0])
    assert loaded[0][0].dtype == np.float32 and loaded[0][1].dtype == np.int64
    assert loaded[1] == 7


def test_pickle_that_would_run_a_shell_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(RunsAShellCommand(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        load_numpy_pickle(data)
    assert not marker.exists()


def test_pickle_naming_eval_is_refused():
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        load_numpy_pickle(pickle.dumps(CallsEval()))


def test_object_arrays_are_refused():
    data = pickle.dumps(np.array([RunsAShellCommand("x")], dtype=object))
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(data)


def test_a_gzipped_tuple_like_the_wheel_loads():
    splits = tuple((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)) for _ in range(3))
    loaded = load_numpy_pickle(gzip.decompress(gzip.compress(pickle.dumps(splits, protocol=4))))
    assert len(loaded) == 3 and loaded[2][0].shape == (2, 784)
