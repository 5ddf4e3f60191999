"""Trust off the default path: whatever Snakemake flag a user passes, dvc.lock records only what ran, both tools
agree on what is stale, read-only commands change nothing, and damaged files give one line and a way back.

Every test starts from a copy of the session's fully built small pipeline (`built_repo`, tests/conftest.py),
usually after editing `models.scratch_sgd.lr`, which makes exactly LR_STAGES stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import (
    SMALL_PARAMS,
    copy_repo,
    dvc_stage_key,
    parse_snakemake_jobs,
    run,
    snakemake_dry_run_jobs,
    venv_env,
    write_params,
)

from mnistbench.params import load_params

pytestmark = pytest.mark.slow

SEEDS = (0, 1)
LR_STAGES = {f"{stage}@scratch_sgd-{seed}" for stage in ("train", "evaluate") for seed in SEEDS} | {"report"}


def jobs(*stages: str) -> set[tuple]:
    return {dvc_stage_key(stage) for stage in stages}


@pytest.fixture
def work_repo(built_repo, tmp_path) -> Path:
    return copy_repo(built_repo, tmp_path / "repo")


def edit_params(repo: Path, change) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    change(params)
    write_params(repo, params)


def set_lr(value: float):
    def change(params):
        params["models"]["scratch_sgd"]["lr"] = value

    return change


def dvc_stale(repo: Path) -> set[str]:
    """The stages `dvc status` reports as changed."""
    return set(json.loads(run(repo, "dvc", "status", "--json").stdout or "{}"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records_are_honest(repo: Path) -> list[str]:
    """What is wrong with the results: a record whose `run` is not params.yaml's, an evaluation of other weights."""
    params = load_params(repo / "params.yaml").mapping  # as the records store them
    problems = []
    for model, run_params in params["models"].items():
        for seed in params["seeds"]:
            train = json.loads((repo / f"reports/train/{model}/seed{seed}.json").read_text())
            evaluation = json.loads((repo / f"reports/eval/{model}/seed{seed}.json").read_text())
            weights = repo / f"data/models/{model}/seed{seed}.npz"
            if train["run"] != run_params:
                problems.append(f"reports/train/{model}/seed{seed}.json ran {train['run']}, params say {run_params}")
            if json.dumps(evaluation).count(sha256(weights)) == 0:
                problems.append(f"reports/eval/{model}/seed{seed}.json evaluated other weights than {weights}")
    return problems


# --- DVC records only what ran, whatever the flag ---------------------------------------------------------------

# flags after the lr edit -> (stages dvc status must still call stale, jobs snakemake -n must still show)
FLAG_CASES = {
    "until": (["--until", "prepare"], LR_STAGES, jobs(*LR_STAGES)),
    # train runs; evaluate and report are omitted
    "omit_from": (["--omit-from", "evaluate"], LR_STAGES - {"train@scratch_sgd-0", "train@scratch_sgd-1"},
                  jobs("evaluate@scratch_sgd-0", "evaluate@scratch_sgd-1", "report")),
    "touch": (["--touch"], LR_STAGES, jobs(*LR_STAGES)),
    "forcerun": (["--forcerun", "prepare", "--until", "prepare"], LR_STAGES, jobs(*LR_STAGES)),
    # report runs on the old records (train and evaluate are not allowed): DVC records the report it ran
    "allowed_rules": (["--allowed-rules", "download", "prepare", "report"], LR_STAGES - {"report"},
                      jobs(*LR_STAGES)),
    "rule_target": (["prepare"], LR_STAGES, jobs(*LR_STAGES)),
    "file_target": (["reports/eval/scratch_sgd/seed0.json"],
                    {"train@scratch_sgd-1", "evaluate@scratch_sgd-1", "report"},
                    jobs("train@scratch_sgd-1", "evaluate@scratch_sgd-1", "report")),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_a_stage_that_did_not_run_stays_stale_for_both_tools(work_repo, case):
    flags, still_stale, still_to_run = FLAG_CASES[case]
    edit_params(work_repo, set_lr(0.05))
    run(work_repo, "snakemake", "--cores", "2", *flags)
    assert dvc_stale(work_repo) == still_stale
    assert snakemake_dry_run_jobs(work_repo) == still_to_run


def test_a_failing_job_under_keep_going_records_only_the_jobs_that_finished(work_repo):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to make device: cuda fail")

    def change(params):
        params["models"]["scratch_sgd"]["lr"] = 0.05
        params["models"]["torch_adam"]["device"] = "cuda"

    edit_params(work_repo, change)
    assert run(work_repo, "snakemake", "--cores", "2", "--keep-going", check=False).returncode != 0
    failed = {f"{stage}@torch_adam-{seed}" for stage in ("train", "evaluate") for seed in SEEDS} | {"report"}
    assert dvc_stale(work_repo) == failed
    assert snakemake_dry_run_jobs(work_repo) == jobs(*failed)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["ctrl_c", "sigterm"])
def test_an_interrupted_run_leaves_unfinished_stages_stale(work_repo, how):
    def change(params):
        params["models"]["scratch_sgd"]["lr"] = 0.05
        params["models"]["scratch_adam"]["epochs"] = 100_000

    edit_params(work_repo, change)
    # Both cores busy with the endless scratch_adam trains: no short job is ending when the signal lands (Snakemake
    # keeps the incomplete marker of a job whose end it has not yet processed, and -n then stops on it). Their logs
    # are written anew when a train starts, and the built fixture has the last run's: remove those first.
    long_jobs = [work_repo / f"logs/train/scratch_adam/seed{seed}.log" for seed in SEEDS]
    for log in long_jobs:
        log.unlink()
    env = venv_env(TQDM_DISABLE="1")
    # As a terminal's foreground job, SIGINT at its default: under a shell without job control (`cmd &` in a
    # script), pytest and so every process it starts would inherit SIGINT ignored, and Python then never raises
    # KeyboardInterrupt.
    job = subprocess.Popen(["snakemake", "--cores", "2"], cwd=work_repo, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all(log.exists() for log in long_jobs):
        time.sleep(0.5)
    time.sleep(3)
    # Ctrl-C: the terminal signals the whole foreground group; SIGTERM: a scheduler or `timeout` ending the group
    os.killpg(job.pid, signal.SIGINT if how == "ctrl_c" else signal.SIGTERM)
    try:
        job.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    assert not any((work_repo / f"reports/train/scratch_adam/seed{seed}.json").exists() for seed in SEEDS)
    unfinished = {f"{stage}@scratch_adam-{seed}" for stage in ("train", "evaluate") for seed in SEEDS} | {"report"}
    assert unfinished <= dvc_stale(work_repo)
    assert jobs(*unfinished) <= snakemake_dry_run_jobs(work_repo)


def test_the_documented_tool_behaviour_this_relies_on_still_holds(work_repo):
    """mnistbench.stages reads `dvc status --json`, dvc.lock and DVC's cache layout, and names matrix stages as
    DVC does; the Snakefile relies on Snakemake loading profiles/default. Fails naming the version that changed."""
    import importlib.metadata

    dvc, snakemake = (f"{name} {importlib.metadata.version(name)}" for name in ("dvc", "snakemake"))
    flip_byte(work_repo / "data/raw/mnist.npz")
    edit_params(work_repo, set_lr(0.05))
    status = json.loads(run(work_repo, "dvc", "status", "--json").stdout)
    assert status["download"] == [{"changed outs": {"data/raw/mnist.npz": "modified"}}], (
        f"{dvc}: `dvc status --json` no longer reports a modified output as before: {status['download']}")
    assert set(status) >= LR_STAGES, f"{dvc}: matrix stages are no longer named train@MODEL-SEED: {sorted(status)}"
    lock = yaml.safe_load((work_repo / "dvc.lock").read_text())
    md5 = next(out["md5"] for out in lock["stages"]["download"]["outs"] if out["path"] == "data/raw/mnist.npz")
    assert (work_repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).is_file(), (
        f"{dvc}: the cache no longer keeps files under .dvc/cache/files/md5/XX/REST")
    dry = run(work_repo, "snakemake", "-n", check=False)
    assert "Using workflow specific profile profiles/default" in dry.stdout + dry.stderr, (
        f"{snakemake}: the default workflow profile profiles/default (rerun-triggers: mtime) was not loaded")


def test_going_back_with_git_and_dvc_checkout_reruns_nothing(work_repo):
    """Snakemake's own records say lr 0.05 ran last; DVC restored the lr 0.1 results: DVC's word counts."""
    run(work_repo, "git", "add", "-A")
    run(work_repo, "git", "commit", "-qm", "lr 0.1 results")
    edit_params(work_repo, set_lr(0.05))
    run(work_repo, "snakemake", "--cores", "2")
    run(work_repo, "git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "reports")
    run(work_repo, "dvc", "checkout", "--force")
    assert dvc_stale(work_repo) == set()
    assert snakemake_dry_run_jobs(work_repo) == set()
    assert records_are_honest(work_repo) == []


# --- Read-only commands are read-only ---------------------------------------------------------------------------

BOOKKEEPING = (".dvc/tmp", ".snakemake/log", ".snakemake/iocache", ".git")


def snapshot(repo: Path) -> dict[str, tuple]:
    """(size, mtime, sha256) of every file under the repository except the tools' own bookkeeping."""
    found = {}
    for path in sorted(repo.rglob("*")):
        name = path.relative_to(repo).as_posix()
        if path.is_file() and not path.is_symlink() and not name.startswith(BOOKKEEPING):
            stat = path.stat()
            found[name] = (stat.st_size, stat.st_mtime_ns, sha256(path))
    return found


READ_ONLY = [
    ["snakemake", "--cores", "2", "-n"],
    ["snakemake", "--lint"],
    ["snakemake", "--dag"],
    ["snakemake", "--rulegraph"],
    ["snakemake", "--summary"],
    ["snakemake", "--detailed-summary"],
    ["dvc", "status"],
    ["dvc", "exp", "show"],
]


def test_read_only_commands_change_no_file(work_repo, tmp_path):
    edit_params(work_repo, set_lr(0.05))
    before = snapshot(work_repo)
    assert (work_repo / ".snakemake/metadata").is_dir()
    reports = [["snakemake", "--report", str(tmp_path / name)] for name in ("report.html", "report.zip")]
    outputs = {}
    for command in [*READ_ONLY, *reports]:
        result = run(work_repo, *command, check=False)
        outputs[" ".join(command)] = result.stdout + result.stderr
        assert snapshot(work_repo) == before, " ".join(command)
    assert parse_snakemake_jobs(outputs["snakemake --cores 2 -n"])[0] == jobs(*LR_STAGES)
    assert_snakemake_report_holds_the_results(tmp_path / "report.zip", work_repo)


def assert_snakemake_report_holds_the_results(report_zip: Path, repo: Path) -> None:
    """Snakemake's report holds the comparison, the figures' data and the summary, byte for byte, by category."""
    with zipfile.ZipFile(report_zip) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    results = [content for name, content in members.items() if "/data/raw/" in name]  # NAME/data/raw/HASH/FILE
    marked = ["reports/report.html", "reports/summary.json", "reports/plots/learning_curves.csv",
              *(f"reports/plots/{folder}/{model}.csv" for folder in ("curves", "confusion")
                for model in SMALL_PARAMS["models"])]
    for name in marked:
        assert (repo / name).read_bytes() in results, name
    index = members[f"{report_zip.stem}/report.html"]
    for category in (b"1. The comparison", b"2. Figures' data", b"3. Summary for DVC"):
        assert category in index, category


# --- Damaged files ----------------------------------------------------------------------------------------------


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    # file, damage, the command that reads it, the one line it must print
    "raw": ("data/raw/mnist.npz", flip_byte, ["mnistbench", "prepare"],
            "mnistbench prepare: error: data/raw/mnist.npz is damaged (bad CRC-32 in images.npy); "
            "restore it: dvc checkout --force data/raw/mnist.npz"),
    "prepared": ("data/prepared/train.npz", truncate, ["mnistbench", "train", "--model", "scratch_sgd", "--seed", "0"],
                 "mnistbench train: error: data/prepared/train.npz is damaged (truncated: not a complete .npz "
                 "archive); restore it: dvc checkout --force data/prepared/train.npz"),
    "model": ("data/models/scratch_sgd/seed0.npz", flip_byte,
              ["mnistbench", "evaluate", "--model", "scratch_sgd", "--seed", "0"],
              "mnistbench evaluate: error: data/models/scratch_sgd/seed0.npz is damaged (bad CRC-32 in w1.npy); "
              "restore it: dvc checkout --force data/models/scratch_sgd/seed0.npz"),
    "record": ("reports/train/scratch_sgd/seed0.json", truncate,
               ["mnistbench", "evaluate", "--model", "scratch_sgd", "--seed", "0"],
               "mnistbench evaluate: error: reports/train/scratch_sgd/seed0.json is damaged (not JSON: "
               "truncated or edited); rerun the stage that writes it: "
               "dvc repro --force --single-item train@scratch_sgd-0"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_damaged_file_gives_one_line_and_the_way_back(work_repo, kind):
    name, damage, command, message = CORRUPTIONS[kind]
    damage(work_repo / name)
    before = snapshot(work_repo)
    result = run(work_repo, "mnistbench", "--quiet", *command[1:], check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr
    assert snapshot(work_repo) == {**before, **{k: v for k, v in snapshot(work_repo).items() if k.startswith("logs/")}}


def test_debug_shows_the_traceback(work_repo):
    flip_byte(work_repo / "data/raw/mnist.npz")
    result = run(work_repo, "mnistbench", "--debug", "prepare", check=False)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "BadZipFile" in result.stderr


def test_snakemake_stops_on_a_damaged_raw_file_before_deleting_anything(work_repo):
    flip_byte(work_repo / "data/raw/mnist.npz")
    before = snapshot(work_repo)
    result = run(work_repo, "snakemake", "--cores", "2", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert ("data/raw/mnist.npz is damaged (bad CRC-32 in images.npy); "
            "restore it: dvc checkout --force data/raw/mnist.npz") in output
    assert {k: v for k, v in snapshot(work_repo).items() if not k.startswith(".snakemake/")} == {
        k: v for k, v in before.items() if not k.startswith(".snakemake/")}
    run(work_repo, "dvc", "checkout", "--force", "data/raw/mnist.npz")
    assert dvc_stale(work_repo) == set()
    assert snakemake_dry_run_jobs(work_repo) == set()


def test_the_raw_file_is_checked_against_its_checksum_before_prepare(work_repo):
    import numpy as np

    from mnistbench.io import save_npz

    raw = dict(np.load(work_repo / "data/raw/mnist.npz"))
    raw["images"] = raw["images"].copy()
    raw["images"][0, 0] ^= 1  # a valid archive with other pixels
    save_npz(work_repo / "data/raw/mnist.npz", raw)
    result = run(work_repo, "mnistbench", "--quiet", "prepare", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mnistbench prepare: error: data/raw/mnist.npz: images sha256 ")
    assert result.stderr.strip().endswith("restore it: dvc checkout --force data/raw/mnist.npz")


# --- A random walk through everything a user does ---------------------------------------------------------------

WALK_FLAGS = [  # a plain run three times as often: it brings both tools up to date, where the invariant bites
    [], [], [], ["--until", "prepare"], ["--omit-from", "evaluate"], ["--touch"],
    ["--forcerun", "prepare", "--until", "prepare"], ["--allowed-rules", "download", "prepare", "train"],
    ["reports/eval/scratch_sgd/seed0.json"], ["-n"],
]
OUTPUTS = [f"data/models/{model}/seed{seed}.npz" for model in ("scratch_sgd", "scratch_adam") for seed in SEEDS] + [
    f"reports/train/scratch_sgd/seed{seed}.json" for seed in SEEDS]


def walk_step(repo: Path, rng: random.Random) -> str:
    action = rng.choice(["edit", "edit", "snakemake", "snakemake", "snakemake", "dvc repro", "dvc checkout",
                         "delete", "corrupt", "both at once"])
    if action == "both at once":
        return both_at_once(repo, rng)
    if action == "edit":
        lr = rng.choice([0.1, 0.05, 0.2])
        edit_params(repo, set_lr(lr))
        return f"lr = {lr}"
    if action == "snakemake":
        flags = rng.choice(WALK_FLAGS)
        planned = run(repo, "snakemake", "--cores", "2", "-n", *flags, check=False)
        result = run(repo, "snakemake", "--cores", "2", *flags, check=False)
        if result.returncode == 0 and "-n" not in flags and "--touch" not in flags:
            ran = parse_snakemake_jobs(result.stdout + result.stderr)[0]
            assert ran == parse_snakemake_jobs(planned.stdout + planned.stderr)[0], f"-n showed other jobs: {flags}"
        return f"snakemake {' '.join(flags)}"
    if action == "dvc repro":
        run(repo, "dvc", "repro", check=False)
        return action
    if action == "dvc checkout":
        run(repo, "dvc", "checkout", "--force", check=False)
        return action
    target = repo / rng.choice(OUTPUTS)
    if target.exists():
        target.unlink() if action == "delete" else flip_byte(target)
    return f"{action} {target.relative_to(repo)}"


def both_at_once(repo: Path, rng: random.Random) -> str:
    """One orchestrator started, the other a moment later: one works and the other refuses or finds nothing to do
    (nothing in between makes anything stale again); neither breaks the other's run."""
    first, second = rng.sample([["snakemake", "--cores", "2"], ["dvc", "repro"]], 2)
    env = venv_env(TQDM_DISABLE="1")
    job = subprocess.Popen(first, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(rng.uniform(0.5, 4))
    other = run(repo, *second, check=False)
    first_output, ran_jobs = job.communicate(timeout=600)[0], []
    for command, code, output in ((first, job.returncode, first_output),
                                  (second, other.returncode, other.stdout + other.stderr)):
        # "Missing output files" is a plan's ordinary reason; what breaks a run is a file gone from under it
        broken = [sign for sign in ("No such file or directory", "is missing", "MissingInputException",
                                    "MissingOutputException", "Traceback")
                  if sign in output]
        assert not broken, f"{' '.join(command)}, with the other running:\n{output}"
        jobs_shown = "Running stage '" in output if command[0] == "dvc" else parse_snakemake_jobs(output)[0]
        ran_jobs.append(code == 0 and bool(jobs_shown))
    assert not all(ran_jobs), f"{' '.join(first)} and {' '.join(second)} both ran jobs"
    return f"{' '.join(first)} with {' '.join(second)}"


def test_random_walk_never_shows_stale_results_as_current(work_repo):
    seed = int(os.environ.get("MNISTBENCH_WALK_SEED", random.randrange(10**6)))
    steps = int(os.environ.get("MNISTBENCH_WALK_STEPS", 12))
    print(f"random walk seed {seed} (replay: MNISTBENCH_WALK_SEED={seed})")
    rng = random.Random(seed)
    history, checked = [], 0
    for _ in range(steps):
        history.append(walk_step(work_repo, rng))
        if dvc_stale(work_repo):
            continue  # DVC calls something stale: the invariant below is about both tools saying "current"
        dry = run(work_repo, "snakemake", "--cores", "2", "-n", check=False)
        if dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr:
            assert records_are_honest(work_repo) == [], f"seed {seed}, after: {history}"
            checked += 1
    print(f"{steps} steps, {checked} of them ended with both tools up to date: {history}")


# --- Provenance explains machine differences --------------------------------------------------------------------


def test_training_records_and_the_report_name_the_compute_kernels(built_repo):
    record = json.loads((built_repo / "reports/train/scratch_sgd/seed0.json").read_text())
    kernels = record["provenance"]["kernels"]
    assert kernels["simd_baseline"] and kernels["blas"][0]["architecture"]
    html = (built_repo / "reports/report.html").read_text()
    assert "Compute kernels" in html and f"kernel {kernels['blas'][0]['architecture']}" in html
