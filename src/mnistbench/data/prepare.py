"""The prepare stage: split data/raw/mnist.npz into train / val / test rows and normalize them -> data/prepared/.

Split: `official` takes the training portion from the first `train_rows` rows and the test portion from the
rest; `shuffle` pools all rows and splits them with sklearn's train_test_split(test_size=test_fraction,
random_state=split_seed). Validation rows are the LAST n_val rows of the training portion; training rows are
the first n_train of it, test rows the first n_test of the test portion, so the three never overlap.
Normalize: `unit` = x / 255; `standard` = (x / 255 - mean) / std, scalar mean and std of the training rows only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mnistbench.data import checksums
from mnistbench.data.checksums import array_sha256
from mnistbench.data.raw import RawMnist, load_raw
from mnistbench.errors import DamagedFileError, MnistbenchError, one_of
from mnistbench.io import read_json, save_npz, write_json
from mnistbench.params import DataParams, Params
from mnistbench.paths import Layout

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split_pools(n_rows: int, train_rows: int, data: DataParams) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (int64) of the training portion and of the test portion, before any capping."""
    rows = np.arange(n_rows, dtype=np.int64)
    if data.split == "official":
        return rows[:train_rows], rows[train_rows:]
    from sklearn.model_selection import train_test_split  # about a second of imports, for this split only

    train_pool, test_pool = train_test_split(rows, test_size=data.test_fraction, random_state=data.split_seed)
    return train_pool, test_pool


def split_indices(n_rows: int, train_rows: int, data: DataParams) -> dict[str, np.ndarray]:
    """{"train", "val", "test"} -> int64 row numbers (first n_train, last n_val of the training portion; first n_test).

    Raises MnistbenchError when the data has fewer rows than asked.
    """
    train_pool, test_pool = split_pools(n_rows, train_rows, data)
    wanted = data.n_train + data.n_val
    if wanted > len(train_pool):
        raise MnistbenchError(
            f"data.n_train + data.n_val = {data.n_train} + {data.n_val} = {wanted}: the training portion "
            f"of split {data.split!r} has only {len(train_pool)} rows in this data"
        )
    if data.n_test > len(test_pool):
        raise MnistbenchError(
            f"data.n_test = {data.n_test}: the test portion of split {data.split!r} has only {len(test_pool)} rows"
        )
    return {
        "train": train_pool[: data.n_train],
        "val": train_pool[len(train_pool) - data.n_val :],
        "test": test_pool[: data.n_test],
    }


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Exact mean and std (population) of uint8 pixels / 255, from a 256-bin histogram (no float copy)."""
    if images.size == 0:
        raise MnistbenchError("cannot fit normalization statistics on zero training rows")
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ levels / counts.sum())
    variance = float(counts @ (levels - mean) ** 2 / counts.sum())
    return mean, float(np.sqrt(variance))


NORMALIZERS = {
    "unit": lambda scaled, mean, std: scaled,
    "standard": lambda scaled, mean, std: (scaled - np.float32(mean)) / np.float32(std),
}


def normalize(images: np.ndarray, mode: str, mean: float, std: float) -> np.ndarray:
    """uint8 (n, 784) -> float32 (n, 784): x / 255 (`unit`) or (x / 255 - mean) / std (`standard`)."""
    normalizer = one_of(NORMALIZERS, mode, "data.normalize")
    return normalizer(images.astype(np.float32) / np.float32(255.0), mean, std)


def prepare_arrays(raw: RawMnist, data: DataParams) -> tuple[dict[str, dict[str, np.ndarray]], float, float]:
    """Split and normalize `raw`; return ({split: arrays}, mean, std).

    arrays: "images" float32 (n, 784), "labels" uint8 (n,), "indices" int64 (n,) = row numbers in `raw`.
    """
    indices = split_indices(raw.n_rows, raw.train_rows, data)
    mean, std = pixel_mean_std(raw.images[indices["train"]])
    arrays = {
        split: {
            "images": normalize(raw.images[rows], data.normalize, mean, std),
            "labels": raw.labels[rows],
            "indices": rows,
        }
        for split, rows in indices.items()
    }
    return arrays, mean, std


# What stats.json keeps of data/raw/source.json: what identifies the data, not when or how fast it came.
STABLE_SOURCE_KEYS = ("source", "origin", "canonical", "sha256", "shape", "train_rows")


def stats_record(
    arrays: dict[str, dict[str, np.ndarray]], mean: float, std: float, data: DataParams, source: dict[str, Any]
) -> dict[str, Any]:
    """The content of data/prepared/stats.json.

    It depends only on the data and the params (no dates, no commit): every training job reads it, so a
    prepare rerun that makes the same arrays leaves it byte-identical and DVC reruns no training.
    """
    return {
        "normalize": data.normalize,
        "mean": mean,
        "std": std,
        "fitted_on": f"the {data.n_train} training rows (pixels / 255)",
        "split": data.split,
        "test_fraction": data.test_fraction,
        "split_seed": data.split_seed,
        "validation_rows": "the last n_val rows of the training portion",
        **{f"n_{split}": int(arrays[split]["labels"].shape[0]) for split in SPLITS},
        "label_counts": {split: np.bincount(arrays[split]["labels"], minlength=10).tolist() for split in SPLITS},
        "sha256": {split: {name: array_sha256(a) for name, a in arrays[split].items()} for split in SPLITS},
        "raw": {key: source[key] for key in STABLE_SOURCE_KEYS if key in source},
    }


def verify_raw(raw: RawMnist, source: dict[str, Any], layout: Layout) -> None:
    """Check the raw arrays against the sha256 the download recorded (canonical MNIST's, for canonical data)."""
    expected = checksums.CANONICAL_SHA256 if source.get("canonical") else source.get("sha256", {})
    for name in ("images", "labels"):
        actual = array_sha256(getattr(raw, name))
        if name in expected and actual != expected[name]:
            problem = f"{name} sha256 {actual} is not the {expected[name]} recorded in {layout.source_json}"
            raise DamagedFileError(layout.raw_npz, problem, summary=f"{layout.raw_npz}: {problem}")


def run_prepare(params: Params, layout: Layout) -> None:
    """Stage entry point: read layout.raw_npz, write layout.prepared_split(train|val|test) and layout.stats_json."""
    raw = load_raw(layout.raw_npz, needed_by="mnistbench prepare")
    source = read_json(layout.source_json, needed_by="mnistbench prepare")
    verify_raw(raw, source, layout)
    arrays, mean, std = prepare_arrays(raw, params.data)
    for split in SPLITS:
        save_npz(layout.prepared_split(split), arrays[split])
    write_json(layout.stats_json, stats_record(arrays, mean, std, params.data, source))
    log.info(
        "prepared %s: train %d, val %d, test %d rows; normalize %s (mean %.4f, std %.4f) -> %s",
        params.data.split,
        *(len(arrays[s]["labels"]) for s in SPLITS),
        params.data.normalize,
        mean,
        std,
        layout.prepared_dir,
    )
