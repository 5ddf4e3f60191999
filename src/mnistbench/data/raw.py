"""The raw data file data/raw/mnist.npz: canonical MNIST as bytes, exactly as the sources deliver it.

Format (others rely on it): `images` uint8 (N, 784), `labels` uint8 (N,), `train_rows` int64 scalar = how many
leading rows belong to the official training set (60,000 of 70,000 for canonical MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistbench.errors import MnistbenchError
from mnistbench.io import load_npz, save_npz

PIXELS = 28 * 28


@dataclass(frozen=True)
class RawMnist:
    """images: uint8 (N, 784); labels: uint8 (N,), 0..9; train_rows: leading rows of the official training set."""

    images: np.ndarray
    labels: np.ndarray
    train_rows: int

    @property
    def n_rows(self) -> int:
        return int(self.labels.shape[0])


def check_raw(raw: RawMnist, where: str) -> RawMnist:
    """Raise MnistbenchError naming `where` unless `raw` is in the raw format; return it unchanged."""
    images, labels = raw.images, raw.labels
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != PIXELS:
        raise MnistbenchError(f"{where}: images are {images.dtype} {images.shape}: expected uint8 (N, {PIXELS})")
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise MnistbenchError(f"{where}: labels are {labels.dtype} {labels.shape}: expected uint8 ({images.shape[0]},)")
    if labels.size and labels.max() > 9:
        raise MnistbenchError(f"{where}: label {int(labels.max())} found: labels must be 0..9")
    if not 0 <= raw.train_rows <= raw.n_rows:
        raise MnistbenchError(f"{where}: train_rows = {raw.train_rows}: must be between 0 and {raw.n_rows}")
    return raw


def save_raw(path: str | Path, raw: RawMnist) -> None:
    """Write `raw` atomically to `path` in the raw format."""
    save_npz(path, {"images": raw.images, "labels": raw.labels, "train_rows": np.int64(raw.train_rows)})


def load_raw(path: str | Path, needed_by: str = "this stage") -> RawMnist:
    """Read and check a raw-format .npz (allow_pickle=False)."""
    arrays = load_npz(path, needed_by)
    missing = {"images", "labels", "train_rows"} - set(arrays)
    if missing:
        raise MnistbenchError(f"{path}: arrays {sorted(missing)} missing: expected images, labels, train_rows")
    raw = RawMnist(arrays["images"], arrays["labels"], int(arrays["train_rows"]))
    return check_raw(raw, str(path))
