"""One orchestrator at a time: while Snakemake or DVC works in a repository, the other refuses before it plans,
deletes or writes anything, naming the running one and its PID; read-only commands still answer or say in one
line why they cannot; a killed run's lock never blocks; queued experiments run beside Snakemake.

Every test starts from the built small pipeline with `models.scratch_sgd.lr` edited. The running orchestrator is
held at a known point: its first `mnistbench train --model scratch_sgd --seed 0` waits for a file the test creates
(a wrapper first on its PATH; the project's code has no test hook).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from pipeline_helpers import (
    ALL_JOBS,
    BIN,
    SMALL_PARAMS,
    copy_repo,
    make_fresh_repo,
    run,
    snakemake_dry_run_jobs,
)
from test_trust import dvc_stale, edit_params, records_are_honest, set_lr, snapshot

pytestmark = pytest.mark.slow

WHAT_TO_DO = "is running in this repository; wait for it to finish or stop it, then run again"
HELD_JOB = "train --model scratch_sgd --seed 0"
HELD_OUTPUTS = ("data/models/scratch_sgd/seed0.npz", "reports/train/scratch_sgd/seed0.json")
SNAKEMAKE = ("snakemake", "--cores", "1")  # one job at a time: nothing moves while the held job waits


@pytest.fixture
def work_repo(built_repo, tmp_path) -> Path:
    repo = copy_repo(built_repo, tmp_path / "repo")
    edit_params(repo, set_lr(0.05))
    return repo


@contextmanager
def held(repo: Path, *command: str, finish: bool = True):
    """`command` started in repo and held at the start of HELD_JOB while the block runs. Afterwards it is let go
    and waited for (finish), or killed with its process group; job.output then holds what it printed."""
    hold = repo.parent / "hold"
    hold.mkdir()
    wrapper = hold / "mnistbench"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$PWD" = "{repo}" ]; then case "$*" in *"{HELD_JOB}"*)\n'
        f'  : > "{hold}/reached"; while [ ! -e "{hold}/go" ]; do sleep 0.1; done;; esac; fi\n'
        f'exec "{BIN}/mnistbench" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(hold), str(BIN), os.environ["PATH"]]), "TQDM_DISABLE": "1",
           "DVC_NO_ANALYTICS": "1"}
    log = hold / "output.log"
    with open(log, "w") as output:
        job = subprocess.Popen(command, cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while not (hold / "reached").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert (hold / "reached").exists(), f"{' '.join(command)} never reached {HELD_JOB}:\n{log.read_text()}"
        yield job
    finally:
        if finish:
            (hold / "go").touch()
        else:
            os.killpg(job.pid, signal.SIGKILL)
        try:
            job.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        job.output = log.read_text()


def refused(repo: Path, *command: str) -> str:
    """Run command, which must fail without changing a file; return what it printed."""
    before = snapshot(repo)
    result = run(repo, *command, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{' '.join(command)} was not refused:\n{output}"
    assert "Traceback" not in output
    assert snapshot(repo) == before, f"{' '.join(command)} changed files before refusing"
    return output


def both_up_to_date(repo: Path, snakemake_output: str | None = None) -> None:
    """DVC calls nothing stale, Snakemake has nothing to do, and the records are params.yaml's; snakemake_output:
    what a `snakemake` run just printed in this state, instead of asking `snakemake -n` again."""
    assert dvc_stale(repo) == set()
    if snakemake_output is None:
        assert snakemake_dry_run_jobs(repo) == set()
    else:
        assert "Nothing to be done" in snakemake_output, snakemake_output
    assert records_are_honest(repo) == []


def test_snakemake_refuses_while_dvc_repro_runs(work_repo):
    with held(work_repo, "dvc", "repro") as dvc:
        output = refused(work_repo, *SNAKEMAKE)
        errors = [line for line in output.splitlines() if "error" in line.lower()]
        assert errors == [f"snakemake: error: dvc repro (PID {dvc.pid}) {WHAT_TO_DO}"], output
    assert dvc.returncode == 0, dvc.output
    both_up_to_date(work_repo)


def test_dvc_repro_and_exp_run_refuse_while_snakemake_runs(work_repo):
    with held(work_repo, *SNAKEMAKE) as snakemake:
        for command in (["dvc", "repro"], ["dvc", "exp", "run"]):
            output = refused(work_repo, *command)
            naming = [line for line in output.splitlines() if f"PID {snakemake.pid}" in line]
            assert naming == [f"  (PID {snakemake.pid}): {' '.join(SNAKEMAKE)} {WHAT_TO_DO}"], output
    assert snakemake.returncode == 0, snakemake.output
    assert "dvc.lock records the" in snakemake.output
    both_up_to_date(work_repo)


@pytest.mark.parametrize("running", ["dvc repro", "snakemake"])
def test_read_only_commands_answer_or_say_why_not_beside_a_running_orchestrator(work_repo, running):
    command = ["dvc", "repro"] if running == "dvc repro" else list(SNAKEMAKE)
    with held(work_repo, *command, finish=False) as job:
        before = snapshot(work_repo)
        dry = run(work_repo, "snakemake", "--cores", "2", "-n", check=False)
        assert snapshot(work_repo) == before
        assert (dry.stdout + dry.stderr).strip().splitlines()[-1] == (
            f"snakemake: error: {' '.join(command)} (PID {job.pid}) {WHAT_TO_DO}")
        lint = run(work_repo, "snakemake", "--lint", check=False)
        assert "is running in this repository" not in lint.stdout + lint.stderr
        status = run(work_repo, "dvc", "status", check=False)
        assert snapshot(work_repo) == before
        if running == "snakemake":  # DVC only reads: it answers, the stages Snakemake has not yet recorded
            assert status.returncode == 0 and "train@scratch_sgd-0" in status.stdout, status.stdout + status.stderr
        else:  # DVC against itself: its own message
            assert status.returncode == 0 or status.stderr.strip().startswith("ERROR: ")
        shown = run(work_repo, "dvc", "exp", "show", "--no-pager", check=False)
        assert shown.returncode == 0 and snapshot(work_repo) == before


@pytest.mark.parametrize("killed", ["dvc repro", "snakemake"])
def test_a_killed_orchestrator_leaves_no_lock_that_blocks(work_repo, killed):
    command = ["dvc", "repro"] if killed == "dvc repro" else list(SNAKEMAKE)
    with held(work_repo, *command, finish=False) as job:
        pass
    assert job.returncode == -signal.SIGKILL
    assert job.pid in rwlock_pids(work_repo)  # what the killed one leaves: a stale entry
    other = ["snakemake", "--cores", "2"] if killed == "dvc repro" else ["dvc", "repro"]
    result = run(work_repo, *other)
    output = result.stdout + result.stderr
    assert f"(Pid {job.pid})" in output and "Auto removed it from the lock file" in output, output  # named, cleared
    assert dvc_stale(work_repo) == set()
    if killed == "snakemake":  # Snakemake's own leftovers (its locks, the job it ran): it names the way out
        dry = run(work_repo, "snakemake", "--cores", "2", "-n", check=False)
        assert "snakemake --cleanup-metadata <filenames>" in dry.stdout + dry.stderr
        run(work_repo, "snakemake", "--cleanup-metadata", *HELD_OUTPUTS)
        run(work_repo, "snakemake", "--unlock")
    finished = run(work_repo, "snakemake", "--cores", "2")
    both_up_to_date(work_repo, snakemake_output=finished.stdout + finished.stderr)


def rwlock_pids(repo: Path) -> set[int]:
    """The PIDs with an entry in DVC's rwlock files."""
    pids = set()
    for path in (repo / ".dvc/tmp/rwlock", repo / ".dvc/tmp/exps/rwlock"):
        lock = json.loads(path.read_text()) if path.is_file() else {}
        pids |= {info["pid"] for infos in lock.get("read", {}).values() for info in infos}
        pids |= {info["pid"] for info in lock.get("write", {}).values()}
    return pids


def test_queued_experiments_run_beside_snakemake(work_repo):
    run(work_repo, "git", "add", "-A")
    run(work_repo, "git", "commit", "-qm", "lr 0.05, not yet run")
    for name, lr in (("lr-a", "0.2"), ("lr-b", "0.3")):
        run(work_repo, "dvc", "exp", "run", "--queue", "--name", name, "-S", f"models.scratch_sgd.lr={lr}")
    with held(work_repo, *SNAKEMAKE) as snakemake:
        run(work_repo, "dvc", "queue", "start")
        queue = queue_when_done(work_repo, experiments=2, timeout=400)
        assert queue.count("Success") == 2, queue
        assert snakemake.poll() is None
    assert snakemake.returncode == 0, snakemake.output
    both_up_to_date(work_repo)
    run(work_repo, "dvc", "exp", "apply", "lr-b")
    both_up_to_date(work_repo)


def queue_when_done(repo: Path, experiments: int, timeout: float) -> str:
    """`dvc queue status` once no experiment is queued or running. Each `dvc` call costs about a second of CPU,
    which the experiments need: between the experiments' ends the wait reads their Git refs (DVC keeps an
    experiment's results under refs/exps), and asks DVC only every 10 s (a failed one has no ref) or once all have
    their refs."""
    deadline, asked = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        refs = run(repo, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
        if len(refs) >= experiments or time.monotonic() - asked > 10:
            asked, queue = time.monotonic(), run(repo, "dvc", "queue", "status").stdout
            if "Queued" not in queue and "Running" not in queue:
                return queue
        time.sleep(0.5)
    return run(repo, "dvc", "queue", "status").stdout


def test_a_failing_dvc_status_stops_snakemake_with_its_message(tmp_path):
    repo = make_fresh_repo(tmp_path / "repo", SMALL_PARAMS)
    (repo / ".dvc" / "config.local").write_text("[core]\n    no_such_option = 1\n")
    result = run(repo, "snakemake", "--cores", "2", "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    last = output.strip().splitlines()[-1]
    assert last.startswith("snakemake: error: dvc status failed, so what is current is unknown: ") and (
        "config file error" in last and "no_such_option" in last), output
    assert "Job stats" not in output


def test_without_dvc_snakemake_goes_by_file_dates_only_when_told(tmp_path):
    repo = make_fresh_repo(tmp_path / "repo", SMALL_PARAMS)
    run(repo, "git", "rm", "-rq", ".dvc")
    result = run(repo, "snakemake", "--cores", "2", "-n", check=False)
    assert result.returncode != 0
    assert (result.stdout + result.stderr).strip().splitlines()[-1] == (
        "snakemake: error: no DVC project here (dvc.yaml, .dvc/), and Snakemake takes DVC's word for what is "
        "current: run `dvc init`, or `snakemake --config without_dvc=true` to let file dates decide")
    assert snakemake_dry_run_jobs(repo, "--config", "without_dvc=true") == ALL_JOBS
    # A real run (its first two stages): no DVC to record in, and file dates then say what is done
    run(repo, "snakemake", "--cores", "2", "data/prepared/stats.json", "--config", "without_dvc=true")
    assert (repo / "data" / "prepared" / "stats.json").is_file() and not (repo / "dvc.lock").exists()
    done = {("download", None, None), ("prepare", None, None)}
    assert snakemake_dry_run_jobs(repo, "--config", "without_dvc=true") == ALL_JOBS - done
