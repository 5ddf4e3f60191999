"""Download one URL to a file with a short connect timeout and a tqdm progress bar, written atomically."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mnistbench.errors import MnistbenchError
from mnistbench.io import atomic_path

log = logging.getLogger(__name__)

TIMEOUT_S = 10  # connect and per-read timeout: an unreachable host fails in seconds, not minutes
CHUNK_BYTES = 1 << 16


def download(url: str, target: Path, timeout_s: float = TIMEOUT_S) -> int:
    """Fetch `url` into `target` (renamed into place only when complete); return the byte count.

    Network failures (DNS, refused, timeout, HTTP error) raise MnistbenchError naming the URL.
    """
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_path(target) as temp:
            total = int(response.headers.get("Content-Length") or 0) or None
            return _copy_with_progress(response, temp, total, Path(url).name)
    except (OSError, ValueError) as error:  # URLError, HTTPError, socket.timeout are OSErrors
        raise MnistbenchError(f"{url}: {_reason(error)}") from None


def _copy_with_progress(response, temp: Path, total: int | None, label: str) -> int:
    written = 0
    with open(temp, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as bar:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            handle.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return written


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return f"{type(error).__name__}: {reason if reason is not None else error}"
