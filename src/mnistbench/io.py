"""Atomic file writes and the two formats results are stored in: JSON and NumPy .npz (never pickled).

A writer first fills a temporary file beside the target, then renames it over the target, so an interrupted
job leaves either the old file or no file, never a half-written one that a rerun would trust. A reader that
finds a file damaged raises DamagedFileError (which file, what is wrong); how to restore the file is the
pipeline's knowledge, added by the CLI and `mnistbench.stages`, so this module imports nothing of theirs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mnistbench.errors import DamagedFileError, MnistbenchError


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed to `target`, on error removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    # A new file (O_EXCL) with the ordinary mode, 0o666 less the umask: results are ordinary files, where
    # tempfile.mkstemp would make them private.
    os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_json(target: str | Path, payload: Any) -> None:
    with atomic_path(target) as temp:
        temp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")


def read_json(path: str | Path, needed_by: str = "this stage") -> Any:
    path = Path(path)
    if not path.is_file():
        raise MnistbenchError(f"{path} is missing: {needed_by} needs it (run the earlier stages first)")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except UnicodeDecodeError as error:
        raise DamagedFileError(path, "not UTF-8 text") from error
    except json.JSONDecodeError as error:
        raise DamagedFileError(path, "not JSON: truncated or edited") from error


# np.savez stamps each member with the current time; a fixed stamp makes equal arrays give equal bytes, so
# DVC's hashes change only when the numbers do.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def save_npz(target: str | Path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write plain numeric arrays as an .npz (same layout as np.savez) that loads with allow_pickle=False.

    The bytes depend only on the arrays: the same arrays always give the same file.
    """
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise MnistbenchError(f"array {name!r} for {target} has dtype object: only numeric arrays are stored")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(target) as temp, zipfile.ZipFile(temp, "w", compression=method) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIMESTAMP)
            member.compress_type = method
            with archive.open(member, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def load_npz(path: str | Path, needed_by: str = "this stage") -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise MnistbenchError(f"{path} is missing: {needed_by} needs it (run the earlier stages first)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except zipfile.BadZipFile as error:
        crc = re.match(r"Bad CRC-32 for file '(.+)'", str(error))
        if crc:
            raise DamagedFileError(path, f"bad CRC-32 in {crc.group(1)}") from error
        if str(error) == "File is not a zip file":
            raise DamagedFileError(path, "truncated: not a complete .npz archive") from error
        raise DamagedFileError(path, f"not a valid .npz archive: {error}") from error
    except (EOFError, ValueError, OSError, KeyError, zlib.error) as error:
        raise DamagedFileError(path, f"unreadable array data: {error}") from error


def check_readable(path: str | Path) -> None:
    """Read a whole .npz or .json back (every CRC checked); raise DamagedFileError if it fails."""
    if Path(path).suffix == ".npz":
        load_npz(path)
    elif Path(path).suffix == ".json":
        read_json(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
