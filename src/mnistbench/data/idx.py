"""The IDX format of the original MNIST files, parsed by hand, and a folder of the four files read as one array.

IDX is big-endian: a magic number (two zero bytes, a type code, the number of dimensions), one uint32 per
dimension, then the data in C order. MNIST uses type 0x08 (unsigned byte): images (N, 28, 28), labels (N,).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from mnistbench.data.raw import PIXELS, RawMnist, check_raw
from mnistbench.errors import MnistbenchError

# IDX type code -> big-endian numpy dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"

# The four MNIST files (basename without .gz): official training set first, then the test set.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def parse_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into an array of the stored shape (native byte order); MnistbenchError if malformed."""
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise MnistbenchError(f"{where}: magic {data[:4].hex()}: expected 0000 + an IDX type code + dimensions")
    type_code, n_dims = data[2], data[3]
    header_size = 4 + 4 * n_dims
    if n_dims == 0 or len(data) < header_size:
        raise MnistbenchError(f"{where}: header of {n_dims} dimensions is truncated or empty")
    shape = struct.unpack(f">{n_dims}I", data[4:header_size])
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise MnistbenchError(f"{where}: {len(data)} bytes: dimensions {shape} need exactly {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (detected from its first bytes)."""
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gzip.decompress(data)
    return parse_idx(data, where=str(path))


def find_idx_file(folder: Path, basename: str) -> Path:
    """The file for `basename` in `folder`: plain or .gz, with '-idx' or '.idx' (both spellings circulate)."""
    spellings = (basename, basename.replace("-idx", ".idx"))
    for name in spellings:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise MnistbenchError(f"IDX folder {folder}: no {basename} or {basename}.gz")


def load_idx_folder(folder: str | Path) -> RawMnist:
    """Read the four MNIST IDX files of `folder` as one RawMnist: training rows first, then test rows."""
    folder = Path(folder)
    arrays = {key: read_idx(find_idx_file(folder, name)) for key, name in IDX_FILES.items()}
    for part in ("train", "test"):
        _check_pair(arrays[f"{part}_images"], arrays[f"{part}_labels"], f"{folder} ({part})")
    images = np.concatenate([arrays["train_images"], arrays["test_images"]]).reshape(-1, PIXELS)
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    raw = RawMnist(images.astype(np.uint8), labels.astype(np.uint8), int(arrays["train_labels"].shape[0]))
    return check_raw(raw, str(folder))


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MnistbenchError(f"{where}: images are {images.dtype} {images.shape}: expected uint8 (N, 28, 28)")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise MnistbenchError(f"{where}: labels are {labels.dtype} {labels.shape}: expected uint8 ({images.shape[0]},)")
