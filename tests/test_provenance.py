"""Provenance names the machine code behind the numbers: NumPy's SIMD extensions and the BLAS kernel."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mnistbench.provenance import compute_kernels, provenance
from mnistbench.report.provenance_view import describe_kernels, software_rows


def test_kernels_name_numpy_simd_and_the_blas_kernel_architecture():
    kernels = compute_kernels()
    assert kernels["simd_baseline"], kernels
    assert all(isinstance(name, str) for name in kernels["simd_found"])
    assert any(pool["internal_api"] == "openblas" and pool["architecture"] for pool in kernels["blas"]), kernels


def test_every_provenance_record_carries_the_kernels():
    assert provenance(threads=1)["kernels"] == compute_kernels()


def test_the_report_describes_kernels_in_one_line():
    kernels = {"simd_baseline": ["X86_V2"], "simd_found": ["X86_V3", "X86_V4"],
               "blas": [{"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX"}]}
    assert describe_kernels(kernels) == (
        "NumPy SIMD: X86_V3, X86_V4 (baseline X86_V2); BLAS: openblas 0.3.31, kernel SkylakeX")


NUMPY_OPENBLAS = {"internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "Haswell",
                  "threading_layer": "pthreads"}
SCIPY_OPENBLAS = {"internal_api": "openblas", "version": "0.3.30", "architecture": "Haswell",
                  "threading_layer": "pthreads"}


def _runs_with_blas(*loaded: list[dict]) -> SimpleNamespace:
    """Made-up report inputs: one run per entry of `loaded`, whose processes loaded those BLAS libraries."""
    def record(blas):
        return {"provenance": {"kernels": {"simd_baseline": ["X86_V2"], "simd_found": ["X86_V3"], "blas": blas,
                                           "numpy_blas": NUMPY_OPENBLAS}}}

    return SimpleNamespace(runs=[SimpleNamespace(model=f"m{index}", train=record(blas), evaluation=record(blas))
                                 for index, blas in enumerate(loaded)])


def test_scipy_loading_its_own_openblas_beside_numpys_is_not_a_different_kernel():
    inputs = _runs_with_blas([NUMPY_OPENBLAS], [NUMPY_OPENBLAS, SCIPY_OPENBLAS])
    assert software_rows(inputs)["kernels"] == [
        "NumPy SIMD: X86_V3 (baseline X86_V2); BLAS: openblas 0.3.31.188.0, kernel Haswell"]


def test_a_different_numpy_blas_kernel_is_still_reported_as_different():
    inputs = _runs_with_blas([NUMPY_OPENBLAS])
    skylake = {**NUMPY_OPENBLAS, "architecture": "SkylakeX"}
    other = dict(inputs.runs[0].train["provenance"]["kernels"], numpy_blas=skylake)
    inputs.runs.append(SimpleNamespace(model="m1", train={"provenance": {"kernels": other}},
                                       evaluation={"provenance": {"kernels": other}}))
    assert len(software_rows(inputs)["kernels"]) == 2


def test_the_kernels_name_the_blas_library_numpy_itself_calls():
    import scipy.linalg  # noqa: F401  (SciPy's own OpenBLAS, where its wheel ships one, is now loaded too)

    compute_kernels.cache_clear()
    kernels = compute_kernels()
    assert kernels["numpy_blas"] is not None and kernels["numpy_blas"] in kernels["blas"], kernels
    assert kernels["numpy_blas"]["version"] == np.show_config(mode="dicts")["Build Dependencies"]["blas"]["version"]
