"""Shared test fixtures: the repository root, a writable copy of the default params, and the fixture pipeline
(`fresh_repo`, `built_repo`) built once per session."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest
import yaml

from mnistbench.data import checksums

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# tests/fixtures/mnist_small.npz holds rows 0..599 and 60000..60199 of canonical MNIST; these are its digests.
FIXTURE_SHA256 = {
    "images": "c3e40bbf02372375fdacfc229fc5358b983306996fc1d28c5fff7b58c209f056",
    "labels": "940917de745eac0ec5774378da654e19bb55e843c5bbb709f53f939ef62f1e0a",
}


# The order the pytest-xdist workers take the test files in (`--dist loadfile --no-loadscope-reorder`,
# pyproject.toml): the longest first, so that the many short files even out the end. The SLURM file leads: its
# workflows mostly wait for the cluster's status queries, and start before the session build is done.
LONGEST_FIRST = ("test_slurm.py", "test_trust.py", "test_pipeline.py", "test_orchestrators.py",
                 "test_preloaded_tools.py", "test_sweep_pipeline.py", "test_house.py", "test_report.py",
                 "test_families.py", "test_optimizers_vs_torch.py", "test_report_browser.py",
                 "test_report_optimizers.py", "test_dvc_record.py", "test_backend_torch.py")


def pytest_xdist_auto_num_workers(config) -> int:
    """The workers of `-n auto` (pyproject.toml): three when end-to-end tests run, since their tools often wait
    (SLURM's status queries, held orchestrators) and a third worker fills those waits; two for the unit tests
    alone, which never wait, where a third would only collect everything once more (tests/README.md)."""
    return 2 if "not slow" in (config.option.markexpr or "") else 3


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep collection order


@pytest.fixture
def fixture_is_canonical(monkeypatch):
    """Pretend the 800-row fixture is canonical MNIST, so checks and fetchers run on real bytes."""
    monkeypatch.setattr(checksums, "CANONICAL_ROWS", 800)
    monkeypatch.setattr(checksums, "CANONICAL_TRAIN_ROWS", 600)
    monkeypatch.setattr(checksums, "CANONICAL_SHA256", FIXTURE_SHA256)


@pytest.fixture
def default_params_mapping() -> dict:
    with open(REPO_ROOT / "params.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def write_params(tmp_path):
    """Write a params mapping (or raw YAML text) to a file in tmp_path and return its path."""

    def write(content, name: str = "params.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def deterministic_torch():
    """The torch settings the CLI applies to a torch job (threads, deterministic kernels), for one test only:
    they are process-wide, so they are restored afterwards instead of leaking into later tests."""
    torch = pytest.importorskip("torch")
    from mnistbench.backends.torch import TorchBackend

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    TorchBackend.configure_process(1)
    yield
    threads, deterministic, benchmark, cublas = saved
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = benchmark
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


# --- The fixture pipeline, built once per test session ------------------------------------------------------------
# Both workspaces are read-only by convention: a test that changes one works in a copy_repo() of it (a copy keeps
# file times, which Snakemake's decisions read, and costs a fraction of a second; a build costs a minute).


@pytest.fixture(scope="session")
def fresh_repo(tmp_path_factory) -> Path:
    """A git repository with this project's files, the small pipeline's params (SMALL_PARAMS), and no outputs."""
    from pipeline_helpers import SMALL_PARAMS, make_fresh_repo

    return built_once(tmp_path_factory, "fresh", lambda repo: make_fresh_repo(repo, SMALL_PARAMS))


@pytest.fixture(scope="session")
def built_repo(fresh_repo, tmp_path_factory) -> Path:
    """The fresh repository (same git commit) after one full `snakemake --cores 2` run."""
    from pipeline_helpers import copy_repo, run

    def build(repo: Path) -> Path:
        run(copy_repo(fresh_repo, repo), "snakemake", "--cores", "2")
        return repo

    return built_once(tmp_path_factory, "built", build)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(path)` once per session, however many pytest-xdist workers run it; a worker gets a copy of its own,
    so that commands run in it (`snakemake -n`, `dvc status`) never meet another worker's."""
    from pipeline_helpers import copy_repo

    mine = tmp_path_factory.getbasetemp() / name
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(mine)
    shared = tmp_path_factory.getbasetemp().parent / name  # the workers' base folders share this parent
    done = shared.with_name(f"{name}.done")
    with open(shared.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the build fails
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)  # a failed build of another worker
            build(shared)
            done.touch()
    return copy_repo(shared, mine)
