"""Helpers shared by several test modules (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import struct

import numpy as np


def synthetic_digits(n: int, seed: int, noise: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """(n, 784) float32 images in [0, 1] around 10 fixed random prototypes (overlapping classes), (n,) int64 labels."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1234).random((10, 784))
    labels = rng.integers(0, 10, size=n)
    images = np.clip(prototypes[labels] + noise * rng.standard_normal((n, 784)), 0.0, 1.0)
    return images.astype(np.float32), labels.astype(np.int64)


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array (MNIST's type 0x08): big-endian header of dimensions, then the bytes."""
    assert array.dtype == np.uint8 and array.ndim >= 1, (array.dtype, array.shape)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
