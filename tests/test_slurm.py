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
    REPO_ROOT,
    SMALL_PARAMS,
    copy_repo,
    run,
    snakemake_dry_run_jobs,
    venv_env,
    write_params,
)
from test_orchestrators import WHAT_TO_DO, rwlock_pids

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
def workflows(cluster, fresh_repo, tmp_path_factory, request):
    """Three workflows on the cluster at the same time, as users would share one:
    - "cluster": the fixture pipeline from scratch through the SLURM profile, to compare with the session's local
      run (`built_repo`: the same repository and commit, built with `snakemake --cores 2`);
    - "failing": its download job fails (`data.source` is an empty folder);
    - "cancelled": a long training job, cancelled with scancel as it runs (a copy of the built pipeline, so that
      this job is the only one).
    Each workflow's jobs wait mostly for the plugin's status queries, not for the CPUs: side by side they take the
    time of the longest one, not of all three."""
    base = tmp_path_factory.mktemp("workflows")
    remote = copy_repo(fresh_repo, base / "cluster")
    failing = copy_repo(fresh_repo, base / "failing")
    (failing / "no-mnist-here").mkdir()
    params = yaml.safe_load((failing / "params.yaml").read_text())
    params["data"]["source"] = "no-mnist-here"
    write_params(failing, params)
    env = venv_env(TQDM_DISABLE="1")

    def start(name: str, repo: Path, *targets: str) -> subprocess.Popen:
        return subprocess.Popen(["snakemake", *PROFILE, *targets], cwd=repo, env=env,
                                stdout=(base / f"{name}.log").open("w"), stderr=subprocess.STDOUT)

    started = time.monotonic()
    processes = {"cluster": start("cluster", remote), "failing": start("failing", failing)}
    results = {"cluster": {"repo": remote}, "failing": {"repo": failing}}
    try:
        # The submitting Snakemake counts as running: `dvc repro` beside it is refused, naming it
        deadline = time.monotonic() + 60
        while not claimed(remote, processes["cluster"].pid):  # never a dvc repro beside an unclaimed run
            assert time.monotonic() < deadline, f"no claim of {remote}:\n{(base / 'cluster.log').read_text()}"
            time.sleep(0.2)
        results["cluster"]["dvc_repro_beside"] = run(remote, "dvc", "repro", check=False)
        # The session's build may still be running (the first test file that needs it builds it): the two
        # workflows above do not wait for it.
        cancelled = copy_repo(request.getfixturevalue("built_repo"), base / "cancelled")
        params = yaml.safe_load((cancelled / "params.yaml").read_text())
        params["models"]["scratch_adam"]["epochs"] = 100_000
        write_params(cancelled, params)
        processes["cancelled"] = start("cancelled", cancelled, "data/models/scratch_adam/seed0.npz")
        results["cancelled"] = {"repo": cancelled}
        job_id = wait_for_running_job("rule_train_wildcards_scratch_adam_0", cancelled, timeout=90)
        subprocess.run(["scancel", job_id], check=True)
        results["cancelled"]["job_id"] = job_id
        for name, process in processes.items():
            process.wait(timeout=400)
            results[name].update(output=(base / f"{name}.log").read_text(), returncode=process.returncode,
                                 pid=process.pid)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    print(f"\nthree workflows through SLURM side by side: {time.monotonic() - started:.0f} s")
    return results


@pytest.fixture(scope="module")
def runs(workflows, built_repo):
    """The fixture pipeline run through the SLURM profile, beside the session's local run."""
    cluster = workflows["cluster"]
    assert cluster["returncode"] == 0, cluster["output"]
    return {"local": built_repo, "cluster": cluster["repo"], "output": cluster["output"]}


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


def test_dvc_repro_beside_a_slurm_run_is_refused_naming_the_submitting_snakemake(workflows):
    cluster = workflows["cluster"]
    refusal = cluster["dvc_repro_beside"]
    output = refusal.stdout + refusal.stderr
    assert refusal.returncode != 0 and "Running stage" not in output, output
    naming = [line for line in output.splitlines() if f"PID {cluster['pid']}" in line]
    assert naming == [f"  (PID {cluster['pid']}): snakemake {' '.join(PROFILE)} {WHAT_TO_DO}"], output
    assert cluster["returncode"] == 0, cluster["output"]


def test_dvc_status_is_clean_after_the_cluster_run(runs):
    assert "up to date" in run(runs["cluster"], "dvc", "status").stdout
    assert snakemake_dry_run_jobs(runs["cluster"]) == set()


def claimed(repo: Path, pid: int) -> bool:
    """The process `pid` has claimed repo in DVC's rwlock (which may be caught half-written)."""
    try:
        return pid in rwlock_pids(repo)
    except ValueError:
        return False


def wait_for_running_job(comment: str, workdir: Path, timeout: float) -> str:
    """The SLURM job id of the running job of the workflow in `workdir` whose comment (set by the plugin: rule and
    wildcards) is `comment`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %Z %k"], capture_output=True,
                                 text=True).stdout
        for job_id, job_dir, job_comment in (line.split(maxsplit=2) for line in listing.splitlines()
                                             if line.count(" ") >= 2):
            if job_comment.strip() == comment and Path(job_dir) == workdir:
                return job_id
        time.sleep(0.5)
    raise AssertionError(f"no running SLURM job '{comment}' after {timeout} s")


def test_a_failing_job_fails_the_workflow_and_names_its_slurm_log(workflows):
    failing = workflows["failing"]
    assert failing["returncode"] != 0
    job_id = slurm_jobs(failing["output"])[("download", None, None)]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'FAILED'" in failing["output"]
    slurm_log = failing["repo"] / "logs" / "slurm" / "rule_download" / f"{job_id}.log"
    assert str(slurm_log) in failing["output"]
    assert "IDX folder no-mnist-here: no train-images-idx3-ubyte" in slurm_log.read_text()
    assert not (failing["repo"] / "data" / "prepared").exists()


def test_a_cancelled_job_fails_the_workflow_instead_of_hanging(workflows):
    cancelled = workflows["cancelled"]
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
