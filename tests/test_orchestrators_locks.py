"""mnistbench.orchestrators against DVC's lock files, without a pipeline: who holds them, the claim a Snakemake run
adds and removes, and entries whose process is gone (tests/test_orchestrators.py runs the tools themselves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnistbench.orchestrators import WHAT_TO_DO, Running, claim_workspace, look, running_orchestrator

# DVC's way of holding its repository lock (dvc.lock.Lock): zc.lockfile, which writes the PID into the file
HOLD_REPO_LOCK = ("import sys, time, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); print('held', flush=True);"
                  " time.sleep(60)")


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def other_process():
    """A live process that is not this one, stopped afterwards."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_rwlock(repo: Path, pid: int, cmd: str = "/venv/bin/dvc repro", name: str = "rwlock",
                 locked: str = "data/raw/mnist.npz") -> None:
    """An rwlock file as DVC writes it while `cmd` writes `locked` (a path; in exps/rwlock a name or git ref)."""
    path = repo / ".dvc" / "tmp" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    key = locked if name.startswith("exps") else str(repo / locked)
    path.write_text(json.dumps({"write": {key: {"pid": pid, "cmd": cmd}}}))


def test_nobody_at_work(repo):
    assert running_orchestrator(repo) is None
    assert look(repo).refusal is None


def test_dvc_holding_its_repository_lock_is_named_with_its_pid(repo):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_REPO_LOCK, str(repo / ".dvc/tmp/lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        running = running_orchestrator(repo)
        assert running is not None and running.pid == holder.pid
        assert claim_workspace(repo).refusal == running.refusal("snakemake")
    finally:
        holder.kill()
        holder.wait()
    assert running_orchestrator(repo) is None  # the kernel let go of the flock with the process


def test_a_live_rwlock_entry_is_the_running_command(repo, other_process):
    write_rwlock(repo, other_process.pid)
    assert running_orchestrator(repo) == Running("dvc repro", other_process.pid)
    assert claim_workspace(repo).refusal == (
        f"snakemake: error: dvc repro (PID {other_process.pid}) {WHAT_TO_DO}")


def test_an_entry_whose_process_is_gone_blocks_nothing_and_is_named_and_cleared(repo, caplog):
    pid = gone_pid()
    write_rwlock(repo, pid)
    assert running_orchestrator(repo) is None
    claim = claim_workspace(repo, command="snakemake --cores 1")
    assert claim.refusal is None
    assert f"Process '/venv/bin/dvc repro' with (Pid {pid})" in caplog.text and "Auto removed" in caplog.text
    assert not json.loads((repo / ".dvc/tmp/rwlock").read_text()).get("write")
    claim.release()


def test_queue_workers_locking_git_refs_are_no_orchestrator(repo, other_process):
    write_rwlock(repo, other_process.pid, cmd="/venv/bin/dvc exp queue-worker dvc-exp-1", name="exps/rwlock",
                 locked="refs/exps/celery/stash")
    assert running_orchestrator(repo) is None
    write_rwlock(repo, other_process.pid, cmd="/venv/bin/dvc exp run", name="exps/rwlock", locked="workspace")
    assert running_orchestrator(repo) == Running("dvc exp run", other_process.pid)


def test_a_claim_is_a_reader_entry_naming_the_run_until_released(repo):
    claim = claim_workspace(repo, command="snakemake --cores 1")
    assert claim.refusal is None
    main = json.loads((repo / ".dvc/tmp/rwlock").read_text())
    experiments = json.loads((repo / ".dvc/tmp/exps/rwlock").read_text())
    mine = {"pid": os.getpid(), "cmd": f"snakemake --cores 1 {WHAT_TO_DO}"}
    assert main["read"] == {str(repo.resolve()): [mine]} and not main.get("write")
    assert experiments["read"] == {"workspace": [mine]} and not experiments.get("write")
    assert running_orchestrator(repo) is None  # this process's own claim is not another orchestrator
    claim.release()
    claim.release()
    for name in ("rwlock", "exps/rwlock"):
        assert not json.loads((repo / ".dvc/tmp" / name).read_text()).get("read")


def test_outside_a_dvc_project_nothing_is_claimed_or_created(tmp_path):
    assert claim_workspace(tmp_path).refusal is None
    assert not (tmp_path / ".dvc").exists()
