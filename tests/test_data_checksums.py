"""Checksum verification: canonical constants equal data-sources.md; a matching array passes, one byte off fails."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_SHA256

from mnistbench.data.checksums import (
    CANONICAL_SHA256,
    WHEEL_PICKLE_SHA256,
    WHEEL_SHA256,
    array_sha256,
    verify_arrays,
    verify_canonical,
)
from mnistbench.data.raw import RawMnist, load_raw
from mnistbench.errors import MnistbenchError

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "mnist_small.npz"
DOC_CANDIDATES = (REPO_ROOT / "docs" / "data-sources.md", REPO_ROOT.parent / "shared" / "docs" / "data-sources.md")
DOC_ROWS = {
    "all images": "images",
    "all labels": "labels",
    "train images": "train_images",
    "test images": "test_images",
    "train labels": "train_labels",
    "test labels": "test_labels",
}


def data_sources_doc() -> str:
    for path in DOC_CANDIDATES:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip("data-sources.md not found beside the repository")


def one_byte_changed(raw: RawMnist) -> RawMnist:
    images = raw.images.copy()
    images[123, 456] ^= 1
    return RawMnist(images, raw.labels, raw.train_rows)


def test_canonical_table_equals_data_sources_md():
    doc = data_sources_doc()
    table = dict(re.findall(r"^\| (\w+ \w+) \([\d, ]+\) \| ([0-9a-f]{64}) \|$", doc, flags=re.MULTILINE))
    assert {DOC_ROWS[row]: digest for row, digest in table.items()} == CANONICAL_SHA256


def test_every_digest_of_data_sources_md_is_used():
    doc_digests = set(re.findall(r"\b[0-9a-f]{64}\b", data_sources_doc()))
    assert doc_digests == set(CANONICAL_SHA256.values()) | {WHEEL_SHA256, WHEEL_PICKLE_SHA256}


def test_fixture_with_its_digest_is_accepted():
    raw = load_raw(FIXTURE)
    assert verify_arrays(raw, FIXTURE_SHA256, "fixture") == FIXTURE_SHA256


def test_one_byte_change_is_refused_naming_the_source():
    with pytest.raises(MnistbenchError, match="source my-mirror: images"):
        verify_arrays(one_byte_changed(load_raw(FIXTURE)), FIXTURE_SHA256, "my-mirror")


def test_array_sha256_hashes_the_c_order_bytes():
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert array_sha256(array.T) == array_sha256(np.ascontiguousarray(array.T))
    assert array_sha256(array.T) != array_sha256(array)



def test_canonical_rows_that_match_are_canonical(fixture_is_canonical):
    assert verify_canonical(load_raw(FIXTURE), "fixture") is True


def test_canonical_rows_one_byte_off_are_refused_even_as_a_local_file(fixture_is_canonical):
    with pytest.raises(MnistbenchError, match="source local-file"):
        verify_canonical(one_byte_changed(load_raw(FIXTURE)), "local-file", allow_subset=True)


def test_a_sample_is_accepted_only_when_allowed(caplog):
    raw = load_raw(FIXTURE)
    assert verify_canonical(raw, "sample", allow_subset=True) is False
    assert "not the 70000 of canonical MNIST" in caplog.text
    with pytest.raises(MnistbenchError, match="800 rows: canonical MNIST has 70000"):
        verify_canonical(raw, "sample")
