"""Atomic writes and the .npz format: nothing half-written, nothing pickled, equal arrays give equal bytes."""

from __future__ import annotations

import numpy as np
import pytest

from mnistbench.errors import DamagedFileError, MnistbenchError
from mnistbench.io import atomic_path, load_npz, read_json, save_npz, write_json


def test_npz_round_trip_loads_without_pickle(tmp_path):
    arrays = {"w1": np.arange(12, dtype=np.float32).reshape(3, 4), "labels": np.array([1, 2], dtype=np.uint8)}
    save_npz(tmp_path / "a.npz", arrays)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as loaded:
        assert set(loaded.files) == {"w1", "labels"}
        np.testing.assert_array_equal(loaded["w1"], arrays["w1"])
        assert loaded["labels"].dtype == np.uint8


def test_equal_arrays_give_identical_files(tmp_path):
    arrays = {"x": np.linspace(0, 1, 50), "y": np.ones((2, 2), dtype=np.int64)}
    save_npz(tmp_path / "first.npz", arrays)
    save_npz(tmp_path / "second.npz", arrays, compress=False)
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()


def test_a_pickled_member_is_refused_without_being_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, bad=np.array([{"a": 1}], dtype=object))  # NumPy's own writer pickles object arrays
    with pytest.raises(DamagedFileError, match=r"unreadable array data: Object arrays cannot be loaded"):
        load_npz(path)


def test_object_arrays_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(MnistbenchError, match="dtype object"):
        save_npz(tmp_path / "bad.npz", {"bad": np.array([{"a": 1}], dtype=object)})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text("half")
        raise RuntimeError("killed midway")
    assert read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_missing_input_names_the_file(tmp_path):
    with pytest.raises(MnistbenchError, match=r"missing\.npz is missing: train needs it"):
        load_npz(tmp_path / "missing.npz", needed_by="train")


def test_written_files_get_ordinary_permissions(tmp_path):
    write_json(tmp_path / "r.json", {})
    assert (tmp_path / "r.json").stat().st_mode & 0o644 == 0o644


def test_a_damaged_npz_is_one_line_naming_the_file_and_what_is_wrong(tmp_path):
    path = tmp_path / "arrays.npz"
    save_npz(path, {"weights": np.arange(1000, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as flipped:
        load_npz(path)
    assert (flipped.value.path, flipped.value.problem) == (path, "bad CRC-32 in weights.npy")
    assert str(flipped.value) == f"{path} is damaged (bad CRC-32 in weights.npy)"
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(DamagedFileError, match=r"is damaged \(truncated: not a complete .npz archive\)$"):
        load_npz(path)


def test_a_damaged_json_is_one_line(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{"accuracy": 0.9', encoding="utf-8")
    with pytest.raises(DamagedFileError, match=r"record.json is damaged \(not JSON: truncated or edited\)$"):
        read_json(path)


def test_a_damaged_file_error_is_a_mnistbench_error_that_takes_the_way_back_from_the_caller(tmp_path):
    error = DamagedFileError(tmp_path / "seed0.npz", "bad CRC-32 in w1.npy")
    restored = error.with_recovery("restore it: dvc checkout --force seed0.npz")
    assert isinstance(restored, MnistbenchError)
    assert str(restored) == f"{tmp_path / 'seed0.npz'} is damaged (bad CRC-32 in w1.npy); " \
                            "restore it: dvc checkout --force seed0.npz"
    assert (restored.path, restored.problem) == (error.path, error.problem)
