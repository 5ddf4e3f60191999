"""How the package is built: imports change nothing process-wide, and the layers import only downward."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# Imports every module of the package in a fresh interpreter and prints the process-wide state before and after.
# Third-party libraries are imported first: what they do on import (scikit-learn sets KMP_* variables) is theirs.
IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, signal, sys
import jinja2, jsonschema, matplotlib, numpy, pandas, scipy, sklearn, threadpoolctl, torch, tqdm, yaml

def state():
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "umask": umask,
        "environ": dict(os.environ),
        "signals": {name: str(signal.getsignal(getattr(signal, name))) for name in ("SIGTERM", "SIGINT")},
        "torch": {
            "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "default_dtype": str(torch.get_default_dtype()),
            "matmul_precision": torch.get_float32_matmul_precision(),
        },
        "numpy_errors": numpy.geterr(),
        # MXCSR's flush-to-zero, which the backends set while they train (backends/fpenv.py), never at import
        "gradual_underflow": bool(numpy.float32(1e-39) * numpy.float32(2.0) != 0),
    }

before = state()
import mnistbench
modules = [info.name for info in pkgutil.walk_packages(mnistbench.__path__, "mnistbench.")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"before": before, "after": state(), "modules": modules}))
"""


def imported_state() -> dict:
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, check=True,
                            timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_module_changes_no_process_wide_setting():
    state = imported_state()
    assert {"mnistbench.backends.torch", "mnistbench.io", "mnistbench.cli", "mnistbench.report.render"} <= set(
        state["modules"])
    assert state["before"]["gradual_underflow"]
    for aspect in ("umask", "environ", "signals", "torch", "numpy_errors", "gradual_underflow"):
        assert state["after"][aspect] == state["before"][aspect], aspect


def modules_imported_by(module: str) -> set[str]:
    script = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    return set(result.stdout.split())


def test_evaluation_uses_the_backends_not_the_training_loop():
    assert "mnistbench.training" not in modules_imported_by("mnistbench.evaluation")


def test_the_report_takes_student_t_from_scipy_special_not_scipy_stats():
    """scipy.stats costs a report job about 0.9 s of CPU at import (report/aggregate.py)."""
    imported = modules_imported_by("mnistbench.report.render")
    assert "scipy.special" in imported and "scipy.stats" not in imported


SCRATCH_MODULES = ("activations", "layers", "losses", "initializers", "network", "optim", "schedules")


def test_the_scratch_network_is_pure_numpy_math():
    imported = set().union(*(modules_imported_by(f"mnistbench.scratch.{name}") for name in SCRATCH_MODULES))
    assert {f"mnistbench.scratch.{name}" for name in SCRATCH_MODULES} <= imported
    assert not {"mnistbench.params", "mnistbench.backends", "torch"} & imported


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_only_code_workflow_and_params_edits_make_the_tree_dirty(tmp_path, monkeypatch):
    from mnistbench import provenance

    for name in ("src/mnistbench/x.py", "reports/metrics.json", "params.yaml", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("original\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "start")
    monkeypatch.chdir(tmp_path)

    def dirty_after_editing(name: str) -> bool:
        (tmp_path / name).write_text("edited\n")
        provenance.git_state.cache_clear()
        state = provenance.git_state()
        git(tmp_path, "checkout", "-q", "--", name)
        return state["dirty"]

    assert not dirty_after_editing("reports/metrics.json")
    assert not dirty_after_editing("README.md")
    assert dirty_after_editing("params.yaml")
    assert dirty_after_editing("src/mnistbench/x.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools writes build/ and src/mnistbench.egg-info where it builds, and the source tree is
    # on the PYTHONPATH of the tools that other tests (other xdist workers) run meanwhile.
    source = tmp_path_factory.mktemp("wheel-source")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("mnistbench-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_every_runtime_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    package = REPO_ROOT / "src"
    runtime = {str(path.relative_to(package)) for path in (package / "mnistbench").rglob("*")
               if path.is_file() and path.suffix in (".py", ".yaml", ".j2") and "__pycache__" not in path.parts}
    assert "mnistbench/params.schema.yaml" in runtime and "mnistbench/report/templates/report.html.j2" in runtime
    assert runtime <= packed, sorted(runtime - packed)
    assert any(name.startswith("mnistbench/scratch/_kernels.") and name.endswith(".so") for name in packed), packed


@pytest.mark.slow
def test_a_plain_install_runs_the_stages_in_a_copy_of_the_repository(wheel, tmp_path):
    """Not editable: the package, its schema and templates come from site-packages, never from src/."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    repo = tmp_path / "copy"
    shutil.copytree(REPO_ROOT, repo, ignore=shutil.ignore_patterns("src", ".git", ".venv", "data", "reports", "logs",
                                                                    ".snakemake", ".dvc", "__pycache__"))
    data = {"source": "tests/fixtures/mnist_small.npz", "split": "official", "test_fraction": 0.2, "split_seed": 42,
            "n_train": 400, "n_val": 100, "n_test": 200, "normalize": "unit"}
    params = yaml.safe_load((repo / "params.yaml").read_text()) | {"data": data}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The heavy dependencies come from this environment's site-packages; mnistbench's editable hook does not,
    # since .pth files are read only in site directories, not in PYTHONPATH entries.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "TQDM_DISABLE": "1"}
    cli = [str(python), "-m", "mnistbench"]
    where = subprocess.run([*cli[:1], "-c", "import mnistbench; print(mnistbench.__file__)"], cwd=repo, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    checked = subprocess.run([*cli, "check"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "params.yaml: valid" in checked.stdout, checked.stderr
    for stage in ("download", "prepare"):
        done = subprocess.run([*cli, "--quiet", stage], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (repo / "data" / "prepared" / "train.npz").is_file()
    # the installed package's compiled kernels (no kernels.c beside them to check them against) step the optimizer
    loaded = "from mnistbench.scratch.fused import kernels; print(kernels().__file__)"
    kernels = subprocess.run([*cli[:1], "-c", loaded], cwd=repo, env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert kernels.startswith(str(venv)), kernels


@pytest.mark.slow
def test_plain_snakemake_reads_the_default_workflow_profile(fresh_repo):
    from pipeline_helpers import run

    result = run(fresh_repo, "snakemake", "--cores", "4", "-n")
    assert "Using workflow specific profile profiles/default" in result.stdout + result.stderr
