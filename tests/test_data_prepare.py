"""The prepare stage: split sizes, disjoint rows, determinism, sklearn's split, normalization fitted on train only."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_SHA256
from sklearn.model_selection import train_test_split

from mnistbench.data import prepare
from mnistbench.data.checksums import array_sha256
from mnistbench.data.raw import RawMnist, load_raw
from mnistbench.errors import MnistbenchError
from mnistbench.io import load_npz, read_json, write_json
from mnistbench.params import DataParams, load_params
from mnistbench.paths import Layout

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_NPZ = Path(__file__).parent / "fixtures" / "mnist_small.npz"  # 600 training rows + 200 test rows


def data_params(**changes) -> DataParams:
    base = DataParams(
        source="auto",
        split="official",
        test_fraction=0.2,
        split_seed=42,
        n_train=500,
        n_val=100,
        n_test=200,
        normalize="unit",
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("split", ["official", "shuffle"])
def test_split_sizes_follow_the_params(split):
    indices = prepare.split_indices(800, 600, data_params(split=split, n_train=450, n_val=50, n_test=150))
    assert {name: len(rows) for name, rows in indices.items()} == {"train": 450, "val": 50, "test": 150}
    assert all(rows.dtype == np.int64 for rows in indices.values())


@pytest.mark.parametrize("split", ["official", "shuffle"])
def test_train_val_test_rows_never_overlap(split):
    indices = prepare.split_indices(800, 600, data_params(split=split, n_train=450, n_val=100, n_test=150))
    train, val, test = (set(indices[name].tolist()) for name in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert len(train) == 450 and len(val) == 100 and len(test) == 150


def test_official_split_takes_training_rows_first_and_validation_from_their_end():
    indices = prepare.split_indices(800, 600, data_params())
    np.testing.assert_array_equal(indices["train"], np.arange(0, 500))
    np.testing.assert_array_equal(indices["val"], np.arange(500, 600))
    np.testing.assert_array_equal(indices["test"], np.arange(600, 800))


def test_shuffle_split_is_sklearns_train_test_split():
    data = data_params(split="shuffle", test_fraction=0.25, split_seed=7, n_train=400, n_val=100, n_test=150)
    indices = prepare.split_indices(800, 600, data)
    train_pool, test_pool = train_test_split(np.arange(800), test_size=0.25, random_state=7)
    np.testing.assert_array_equal(indices["train"], train_pool[:400])
    np.testing.assert_array_equal(indices["val"], train_pool[-100:])
    np.testing.assert_array_equal(indices["test"], test_pool[:150])


def test_shuffle_split_is_deterministic_and_depends_on_the_seed():
    first = prepare.split_indices(800, 600, data_params(split="shuffle", split_seed=3, n_test=150))
    again = prepare.split_indices(800, 600, data_params(split="shuffle", split_seed=3, n_test=150))
    other = prepare.split_indices(800, 600, data_params(split="shuffle", split_seed=4, n_test=150))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["train"], other["train"])


def test_zero_validation_rows_gives_an_empty_validation_split():
    indices = prepare.split_indices(800, 600, data_params(n_val=0))
    assert indices["val"].shape == (0,) and len(indices["train"]) == 500


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_train": 550, "n_val": 100}, r"data.n_train \+ data.n_val = 550 \+ 100 = 650: .* only 600 rows"),
        ({"n_test": 201}, r"data.n_test = 201: .* only 200 rows"),
    ],
)
def test_asking_for_more_rows_than_the_data_has_is_one_line_error(changes, message):
    with pytest.raises(MnistbenchError, match=message) as raised:
        prepare.split_indices(800, 600, data_params(**changes))
    assert "\n" not in str(raised.value)


def test_pixel_statistics_equal_numpys():
    images = load_raw(SMALL_NPZ).images
    mean, std = prepare.pixel_mean_std(images)
    assert mean == pytest.approx((images / 255.0).mean(), rel=1e-12)
    assert std == pytest.approx((images / 255.0).std(), rel=1e-12)


def test_unit_normalization_divides_by_255_in_float32():
    images = np.array([[0, 51, 255] + [0] * 781], dtype=np.uint8)
    normalized = prepare.normalize(images, "unit", mean=0.5, std=0.5)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized[0, :3], [0.0, 0.2, 1.0], rtol=1e-7)


def test_standardization_is_fitted_on_training_rows_only():
    sample = load_raw(SMALL_NPZ)
    images = sample.images.copy()
    images[600:] = 255  # test rows all white: they must not move the statistics
    raw = RawMnist(images, sample.labels, 600)
    arrays, mean, std = prepare.prepare_arrays(raw, data_params(normalize="standard"))
    expected_mean, expected_std = prepare.pixel_mean_std(sample.images[:500])
    assert (mean, std) == (expected_mean, expected_std)
    assert float(arrays["train"]["images"].mean(dtype=np.float64)) == pytest.approx(0.0, abs=1e-5)
    assert float(arrays["train"]["images"].std(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    assert arrays["test"]["images"].min() == pytest.approx((1.0 - mean) / std, rel=1e-6)


def test_prepared_rows_are_the_raw_rows_they_index():
    raw = load_raw(SMALL_NPZ)
    arrays, _, _ = prepare.prepare_arrays(raw, data_params(split="shuffle", n_test=150))
    for split in ("train", "val", "test"):
        rows = arrays[split]["indices"]
        np.testing.assert_array_equal(arrays[split]["labels"], raw.labels[rows])
        np.testing.assert_allclose(arrays[split]["images"] * 255, raw.images[rows], atol=1e-4)


def staged_layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.raw_dir.mkdir(parents=True)
    shutil.copy(SMALL_NPZ, layout.raw_npz)
    write_json(layout.source_json, {"source": "local", "sha256": FIXTURE_SHA256})
    return layout


def test_prepare_refuses_raw_arrays_that_differ_from_the_recorded_sha256(tmp_path):
    layout = staged_layout(tmp_path)
    write_json(layout.source_json, {"source": "local", "sha256": {**FIXTURE_SHA256, "labels": "0" * 64}})
    params = load_params(REPO_ROOT / "params.yaml")
    with pytest.raises(MnistbenchError, match=r"mnist.npz: labels sha256 940917de.* is not the 0{64} recorded in"):
        prepare.run_prepare(params, layout)
    assert not layout.prepared_dir.exists()


def test_run_prepare_writes_the_three_splits_and_stats(tmp_path):
    layout = staged_layout(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    params = dataclasses.replace(params, data=data_params(n_val=0, normalize="standard"))
    prepare.run_prepare(params, layout)
    val = load_npz(layout.prepared_split("val"))
    assert val["images"].shape == (0, 784) and val["images"].dtype == np.float32
    stats = read_json(layout.stats_json)
    assert (stats["n_train"], stats["n_val"], stats["n_test"]) == (500, 0, 200)
    assert stats["raw"]["source"] == "local" and stats["normalize"] == "standard"
    assert "date" not in json.dumps(stats) and "provenance" not in stats
    for split in ("train", "val", "test"):
        arrays = load_npz(layout.prepared_split(split))
        assert arrays["labels"].dtype == np.uint8 and arrays["indices"].dtype == np.int64
        assert stats["sha256"][split] == {name: array_sha256(array) for name, array in arrays.items()}


def test_rerunning_prepare_on_the_same_data_rewrites_identical_bytes(tmp_path):
    """Training jobs depend on these files: equal bytes mean DVC reruns none of them."""
    layout = staged_layout(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml")
    params = dataclasses.replace(params, data=data_params())
    outputs = [layout.stats_json, *(layout.prepared_split(split) for split in ("train", "val", "test"))]
    prepare.run_prepare(params, layout)
    first = [path.read_bytes() for path in outputs]
    source = read_json(layout.source_json)
    write_json(layout.source_json, {**source, "date": "a later download", "seconds": 9.9})
    prepare.run_prepare(params, layout)
    assert [path.read_bytes() for path in outputs] == first


def test_run_prepare_without_raw_data_says_which_stage_to_run(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    with pytest.raises(MnistbenchError, match="mnist.npz is missing"):
        prepare.run_prepare(params, Layout(tmp_path))
