"""Shared test helpers: the repository root and a writable copy of the default params."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def fresh_repo(tmp_path_factory) -> Path:
    """A git repository with this project's files, the small pipeline's params, and no outputs."""
    from pipeline_helpers import SMALL_PARAMS, make_fresh_repo

    return make_fresh_repo(tmp_path_factory.mktemp("fresh") / "repo", SMALL_PARAMS)
