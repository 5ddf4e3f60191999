"""The one-pass `dvc commit --force` of chosen stages (mnistbench.dvc_record) writes what DVC's own CLI writes.

The adapter uses DVC internals (Repo.index.stages, Stage.save/commit, ProjectFile.dump_stages): these tests fail,
naming DVC's version, when a release changes them.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
from pipeline_helpers import run

from mnistbench.dvc_record import commit_stages, status
from mnistbench.errors import MnistbenchError

DVC = f"dvc {importlib.metadata.version('dvc')}"
DVC_YAML = """\
stages:
  make:
    matrix:
      n: [1, 2]
    cmd: echo ${item.n} > out${item.n}.txt
    params: [scale]
    outs:
      - out${item.n}.txt
  summary:
    cmd: cat out1.txt out2.txt > summary.json
    deps: [out1.txt, out2.txt]
    outs:
      - summary.json:
          cache: false
"""
RECORDED = ["make@1", "summary"]


@pytest.fixture
def project(tmp_path) -> Path:
    """A DVC project whose three stages' outputs exist (as if Snakemake ran them) but are not in dvc.lock."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("scale: 3\n")
    for item in (1, 2):
        (root / f"out{item}.txt").write_text(f"{item}\n")
    (root / "summary.json").write_text("1\n2\n")
    run(root, "git", "init", "-q")
    run(root, "dvc", "init", "-q")
    return root


def test_the_lock_file_is_the_one_dvc_commit_force_writes(project, tmp_path, monkeypatch):
    by_cli = shutil.copytree(project, tmp_path / "by_cli", symlinks=True)
    run(by_cli, "dvc", "commit", "--force", "--quiet", *RECORDED)
    monkeypatch.chdir(project)
    assert commit_stages(reversed(RECORDED)) == RECORDED
    assert (project / "dvc.lock").read_text() == (by_cli / "dvc.lock").read_text(), (
        f"{DVC}: mnistbench.dvc_record no longer writes what `dvc commit --force` writes")


def test_only_the_named_stages_are_recorded(project, monkeypatch):
    monkeypatch.chdir(project)
    commit_stages(RECORDED)
    stale = json.loads(run(project, "dvc", "status", "--json").stdout or "{}")
    assert set(stale) == {"make@2"}, f"{DVC}: {stale}"


def test_an_unknown_stage_records_nothing(project, monkeypatch):
    monkeypatch.chdir(project)
    with pytest.raises(MnistbenchError, match="no stage make@3"):
        commit_stages(["make@1", "make@3"])
    assert not (project / "dvc.lock").exists()


def test_status_is_what_dvc_status_json_prints(project, monkeypatch):
    monkeypatch.chdir(project)
    commit_stages(["make@1", "make@2", "summary"])
    assert status() == {}
    (project / "params.yaml").write_text("scale: 4\n")
    (project / "out1.txt").write_text("changed\n")
    by_cli = json.loads(run(project, "dvc", "status", "--json").stdout)
    assert set(by_cli) == {"make@1", "make@2", "summary"}, f"{DVC}: {by_cli}"
    assert status() == by_cli, f"{DVC}: mnistbench.dvc_record.status no longer gives what `dvc status --json` prints"
