"""What produced a result: versions, git commit, hardware, threads. Attached to every stage's output."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

# What decides a result: a change outside these (a rewritten output, a README edit) does not make the tree "dirty".
RESULT_INPUTS = ("src", "workflow", "Snakefile", "dvc.yaml", "params.yaml", "pyproject.toml")
# When this module was first imported: the process start where /proc cannot tell it.
_IMPORTED = time.time()
PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "torch", "snakemake", "dvc", "mnistbench")


def provenance(threads: int | None = None, device: str | None = None) -> dict[str, Any]:
    """One dict recorded beside every result. `device` is the torch device name when a GPU was used."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": device or "cpu",
        "kernels": compute_kernels(),
    }


def job_timing() -> dict[str, float]:
    """This job's own clock: {"started": Unix time the process started, "seconds": wall seconds since then}.

    Stages put it in their records just before writing them, so that the report can lay every job of a pipeline on
    one time line (mnistbench.report.context.pipeline_account).
    """
    started = process_started()
    return {"started": started, "seconds": time.time() - started}


@cache
def process_started() -> float:
    """Unix time at which this process started: from /proc on Linux (to a clock tick, 10 ms), which counts the
    interpreter's start and every import; elsewhere when this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            ticks_after_boot = int(handle.read().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks_after_boot / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return time.time() - age


@cache
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def git_state() -> dict[str, Any]:
    """Commit, and whether tracked code, workflow or params files differ from it; None outside a git checkout.

    The pipeline rewrites its own committed outputs (records, metrics), so those do not count as dirty.
    """
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", *RESULT_INPUTS))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


@cache
def compute_kernels() -> dict[str, Any]:
    """Which machine code computed the numbers: NumPy's SIMD extensions and the BLAS kernel architecture.

    NumPy dispatches its loops by CPU (X86_V3 = AVX2 vs X86_V4 = AVX-512) and OpenBLAS picks its matrix-product
    kernel by CPU (Haswell, SkylakeX, ...): the same code and inputs then round differently in float32, so weights
    agree bit for bit only on the same kind of machine. From `numpy.show_config(mode="dicts")` and threadpoolctl.
    """
    import numpy as np
    from threadpoolctl import threadpool_info

    config = np.show_config(mode="dicts")  # mode="dicts": NumPy >= 1.26, as required
    simd = config.get("SIMD Extensions", {})
    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    own = numpy_blas_pool(pools, config.get("Build Dependencies", {}).get("blas", {}).get("version"))
    return {"simd_baseline": list(simd.get("baseline", [])), "simd_found": list(simd.get("found", [])),
            "blas": [_blas_fields(pool) for pool in pools],
            "numpy_blas": None if own is None else _blas_fields(own)}


def numpy_blas_pool(pools: list[dict[str, Any]], built_version: str | None) -> dict[str, Any] | None:
    """Of the BLAS libraries loaded (threadpoolctl pools), the one NumPy calls; None when it cannot be told.

    SciPy's wheels bring their own OpenBLAS, loaded beside NumPy's once SciPy is imported; that one computes
    NumPy's matrix products no more than any other library's. NumPy's wheels keep theirs in numpy.libs (Linux,
    Windows) or numpy/.dylibs (macOS); elsewhere (conda, a system BLAS) the one library of the version NumPy was
    built against is taken.
    """
    shipped = [pool for pool in pools if any(part.startswith("numpy") for part in Path(pool["filepath"]).parent.parts)]
    if len(shipped) == 1:
        return shipped[0]
    built = [pool for pool in pools if built_version and pool.get("version") == built_version]
    return built[0] if len(built) == 1 else (pools[0] if len(pools) == 1 else None)


def _blas_fields(pool: dict[str, Any]) -> dict[str, Any]:
    return {key: pool.get(key) for key in ("internal_api", "version", "architecture", "threading_layer")}


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()
