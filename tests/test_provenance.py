"""Provenance names the machine code behind the numbers: NumPy's SIMD extensions and the BLAS kernel."""

from __future__ import annotations

from mnistbench.provenance import compute_kernels, provenance
from mnistbench.report.provenance_view import describe_kernels


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
