"""The pipeline through SLURM: `snakemake --profile workflow/profiles/slurm` on a one-node cluster that these
tests start (tests/slurm/cluster.sh) gives the same results as a local run, and failures end the workflow.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (.ci/run installs them), and the Snakemake
SLURM plugin (`pip install -e ".[slurm]"`); skipped, with the reason shown, where they cannot be had.
The fixture pipeline and its small params are the session's (tests/conftest.py, SMALL_PARAMS).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import (
    ALL_JOBS,
    BIN,
    REPO_ROOT,
    SMALL_PARAMS,
    copy_repo,
    run,
    snakemake_dry_run_jobs,
    write_params,
)

CLUSTER_SCRIPT = REPO_ROOT / "tests" / "slurm" / "cluster.sh"
# The profile's first status query comes 15 s after a submission, and each query that sees no job end waits 10 s
# longer. This cluster's jobs take seconds: querying after 1 s shortens every step of the chain, not what it checks.
PROFILE = ("--profile", "workflow/profiles/slurm", "--slurm-init-seconds-before-status-checks", "1")
SLURM_TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")
DAEMONS = ("munged", "slurmctld", "slurmd")
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def missing_requirement() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: tests/slurm/cluster.sh starts the SLURM daemons as root"
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        return f"needs {', '.join(missing)}: apt-get install slurmctld slurmd slurm-client munge"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "needs the Snakemake SLURM plugin: pip install -e '.[slurm]'"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.slurm,
              pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))]


class Cluster:
    """The one-node cluster of tests/slurm/cluster.sh, its state in a temporary directory."""

    def __init__(self, state: Path):
        self.state = state
        self.env = {**os.environ, "MNISTBENCH_SLURM_DIR": str(state)}
        self.pids: dict[str, int] = {}

    def script(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(CLUSTER_SCRIPT), command], env=self.env, capture_output=True, text=True,
                                timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"cluster.sh {command} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def start(self) -> None:
        self.script("start")
        self.pids = {name: int((self.state / f"{name}.pid").read_text()) for name in DAEMONS}

    def completed_jobs(self) -> dict[str, str]:
        """SLURM's job completion record: job id -> state."""
        text = (self.state / "jobcomp.log").read_text()
        return dict(re.findall(r"JobId=(\d+) .*?JobState=(\S+)", text))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited daemon may wait a moment to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(") ")[2].split()[0] != "Z"


@pytest.fixture(scope="module")
def cluster():
    # Not under pytest's private temporary directory: munged runs as user munge, which must reach its files.
    state = Path(tempfile.mkdtemp(prefix="mnistbench-slurm-"))
    state.chmod(0o755)
    cluster = Cluster(state)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.script("stop", check=False)
        shutil.rmtree(state, ignore_errors=True)


def slurm_jobs(output: str) -> dict[tuple, str]:
    """(rule, model, seed) -> SLURM job id, from the plugin's lines 'Job N has been submitted with SLURM jobid J'."""
    jobs = {}
    for job_id, log in SUBMITTED.findall(output):
        rule, wildcards = re.search(r"/logs/slurm/rule_(\w+?)/(?:(\w+)/)?\d+\.log$", log).groups()
        model, _, seed = (wildcards or "").rpartition("_")
        jobs[(rule, model or None, int(seed) if seed else None)] = job_id
    return jobs


@pytest.fixture(scope="module")
def runs(cluster, fresh_repo, built_repo, tmp_path_factory):
    """The fixture pipeline run through the SLURM profile, beside the session's local run (`built_repo`: the same
    repository and commit, built with `snakemake --cores 2`)."""
    remote = copy_repo(fresh_repo, tmp_path_factory.mktemp("runs") / "cluster")
    started = time.monotonic()
    result = run(remote, "snakemake", *PROFILE)
    print(f"\nfixture pipeline through SLURM: {time.monotonic() - started:.0f} s")
    return {"local": built_repo, "cluster": remote, "output": result.stdout + result.stderr}


def test_every_job_ran_as_its_own_slurm_job(runs, cluster):
    jobs = slurm_jobs(runs["output"])
    assert set(jobs) == ALL_JOBS
    assert len(SUBMITTED.findall(runs["output"])) == len(ALL_JOBS)
    completed = cluster.completed_jobs()
    assert {job_id: completed.get(job_id) for job_id in jobs.values()} == dict.fromkeys(jobs.values(), "COMPLETED")
    for log in runs["cluster"].glob("logs/slurm/rule_*/**/*.log"):
        assert log.stem in jobs.values(), log


def test_cluster_weights_and_accuracies_equal_a_local_run(runs):
    local, remote = runs["local"], runs["cluster"]
    arrays = sorted(path.relative_to(local) for path in (local / "data").rglob("*.npz"))
    assert len(arrays) == 1 + 3 + len(SMALL_PARAMS["models"]) * len(SMALL_PARAMS["seeds"])  # raw, prepared, weights
    for path in arrays:
        assert (remote / path).read_bytes() == (local / path).read_bytes(), path

    def accuracies(repo: Path) -> dict:
        metrics = json.loads((repo / "reports" / "metrics.json").read_text())
        return {model: entry["test_accuracy"] for model, entry in metrics["models"].items()}

    assert accuracies(remote) == accuracies(local)
    assert set(accuracies(remote)) == set(SMALL_PARAMS["models"])


def test_dvc_status_is_clean_after_the_cluster_run(runs):
    assert "up to date" in run(runs["cluster"], "dvc", "status").stdout
    assert snakemake_dry_run_jobs(runs["cluster"]) == set()


@pytest.fixture(scope="module")
def broken_runs(runs, cluster, fresh_repo, tmp_path_factory):
    """Two workflows that go wrong on the cluster, at the same time: in one, the download job fails (its
    `data.source` is an empty folder); in the other, a long training job is cancelled with scancel as it runs."""
    base = tmp_path_factory.mktemp("broken")
    failing = copy_repo(fresh_repo, base / "failing")
    (failing / "no-mnist-here").mkdir()
    params = yaml.safe_load((failing / "params.yaml").read_text())
    params["data"]["source"] = "no-mnist-here"
    write_params(failing, params)
    cancelled = copy_repo(runs["cluster"], base / "cancelled")
    params = yaml.safe_load((cancelled / "params.yaml").read_text())
    params["models"]["scratch_adam"]["epochs"] = 100_000
    write_params(cancelled, params)

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TQDM_DISABLE": "1"}
    workflows = {
        name: subprocess.Popen(["snakemake", *PROFILE, *targets], cwd=repo, env=env,
                               stdout=(base / f"{name}.log").open("w"), stderr=subprocess.STDOUT)
        for name, repo, targets in (("failing", failing, ()),
                                    ("cancelled", cancelled, ("data/models/scratch_adam/seed0.npz",)))
    }
    results = {"failing": {"repo": failing}, "cancelled": {"repo": cancelled}}
    try:
        job_id = wait_for_running_job("rule_train_wildcards_scratch_adam_0", timeout=90)
        subprocess.run(["scancel", job_id], check=True)
        results["cancelled"]["job_id"] = job_id
        for name, workflow in workflows.items():
            workflow.wait(timeout=180)
            results[name].update(output=(base / f"{name}.log").read_text(), returncode=workflow.returncode)
    finally:
        for workflow in workflows.values():
            if workflow.poll() is None:
                workflow.kill()
    return results


def wait_for_running_job(comment: str, timeout: float) -> str:
    """The SLURM job id of the running job whose comment (set by the plugin: rule and wildcards) is `comment`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                                 text=True).stdout
        for job_id, job_comment in (line.split(maxsplit=1) for line in listing.splitlines() if " " in line):
            if job_comment.strip() == comment:
                return job_id
        time.sleep(0.5)
    raise AssertionError(f"no running SLURM job '{comment}' after {timeout} s")


def test_a_failing_job_fails_the_workflow_and_names_its_slurm_log(broken_runs):
    failing = broken_runs["failing"]
    assert failing["returncode"] != 0
    job_id = slurm_jobs(failing["output"])[("download", None, None)]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in failing["output"]
    slurm_log = failing["repo"] / "logs" / "slurm" / "rule_download" / f"{job_id}.log"
    assert str(slurm_log) in failing["output"]
    assert "IDX folder no-mnist-here: no train-images-idx3-ubyte" in slurm_log.read_text()
    assert not (failing["repo"] / "data" / "prepared").exists()


def test_a_cancelled_job_fails_the_workflow_instead_of_hanging(broken_runs):
    cancelled = broken_runs["cancelled"]
    assert cancelled["returncode"] != 0
    assert slurm_jobs(cancelled["output"]) == {("train", "scratch_adam", 0): cancelled["job_id"]}
    assert f"SLURM-job '{cancelled['job_id']}' failed, SLURM status is: 'CANCELLED'" in cancelled["output"]
    assert not (cancelled["repo"] / "data" / "models" / "scratch_adam" / "seed0.npz").exists()


def test_stopping_the_cluster_leaves_no_daemon_running(cluster):
    assert all(alive(pid) for pid in cluster.pids.values())
    cluster.script("stop")
    assert [name for name, pid in cluster.pids.items() if alive(pid)] == []
    status = cluster.script("status", check=False)
    assert status.returncode != 0
    assert not re.search(r"\(pid \d+\)", status.stdout), status.stdout
    etc_conf = Path("/etc/slurm/slurm.conf")
    assert not etc_conf.exists() or str(cluster.state) not in etc_conf.read_text()
