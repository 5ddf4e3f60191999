"""IDX parsing: the committed fixture folder (gzip'd and plain files), the header checks, round trips."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from helpers import encode_idx

from mnistbench.data.idx import load_idx_folder, parse_idx, read_idx
from mnistbench.data.raw import load_raw
from mnistbench.errors import MnistbenchError

FIXTURES = Path(__file__).parent / "fixtures"
IDX_FOLDER = FIXTURES / "mnist_idx_small"  # rows 0..39 and 60000..60009 of canonical MNIST


def test_fixture_headers_carry_the_mnist_magic_numbers():
    images = gzip.decompress((IDX_FOLDER / "train-images-idx3-ubyte.gz").read_bytes())
    labels = (IDX_FOLDER / "t10k-labels-idx1-ubyte").read_bytes()
    assert int.from_bytes(images[:4], "big") == 2051
    assert int.from_bytes(labels[:4], "big") == 2049


def test_gzip_and_plain_files_parse_to_the_same_array(tmp_path):
    plain = (IDX_FOLDER / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "images.gz").write_bytes(gzip.compress(plain))
    from_gzip = read_idx(tmp_path / "images.gz")
    from_plain = read_idx(IDX_FOLDER / "t10k-images-idx3-ubyte")
    assert from_plain.shape == (10, 28, 28) and from_plain.dtype == np.uint8
    np.testing.assert_array_equal(from_gzip, from_plain)


def test_idx_folder_equals_the_same_rows_of_the_npz_fixture():
    from_idx = load_idx_folder(IDX_FOLDER)
    sample = load_raw(FIXTURES / "mnist_small.npz")  # rows 0..599 then 60000..60199
    rows = np.r_[0:40, 600:610]
    assert from_idx.train_rows == 40 and from_idx.n_rows == 50
    np.testing.assert_array_equal(from_idx.images, sample.images[rows])
    np.testing.assert_array_equal(from_idx.labels, sample.labels[rows])


def test_first_labels_are_mnists():
    raw = load_idx_folder(IDX_FOLDER)
    assert raw.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.labels[40:50].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_encode_then_parse_round_trips():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(encode_idx(array)), array)


def test_big_endian_types_are_decoded():
    data = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (258).to_bytes(4, "big")
    assert parse_idx(data).tolist() == [1, 258]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x07", "magic"),
        (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x07", "magic"),
        (b"\x00\x00\x08\x02" + (1).to_bytes(4, "big"), "truncated"),
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x07", "need exactly"),
    ],
)
def test_malformed_idx_is_refused(data, message):
    with pytest.raises(MnistbenchError, match=message):
        parse_idx(data)


def test_missing_file_in_folder_is_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((1, 28, 28), np.uint8)))
    with pytest.raises(MnistbenchError, match="train-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)
