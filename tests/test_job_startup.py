"""A job's start-up: a scratch job (and a prepare job of the official split) imports neither torch nor SciPy nor
scikit-learn, and the records keep every field.

The jobs run in a fresh interpreter on the 800-row fixture, as Snakemake and DVC run them, so that `sys.modules` shows
what a job really imported (this test process has imported torch long ago).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO_ROOT, SMALL_PARAMS

# What the records held before start-up was cut (main at 62b8d86), plus the job clock: none may go missing.
TRAIN_FIELDS = {"backend", "blas", "data", "device", "diverged_epoch", "epochs_completed", "history", "load_average",
                "model", "n_train", "n_val", "network", "peak_memory_mb", "provenance", "run", "samples_per_second",
                "seconds_per_epoch", "seed", "status", "threads", "train_seconds", "wall_seconds", "job"}
EVAL_FIELDS = {"confusion_matrix", "diverged_epoch", "impl", "inference", "inputs", "macro_f1", "model", "n_test",
               "nonfinite_rows", "per_class", "provenance", "seed", "status", "test_accuracy", "test_loss",
               "time_to_target", "worst_mistakes", "job"}
PROVENANCE_FIELDS = {"date", "git", "python", "packages", "platform", "cpu", "cpu_count", "threads", "device",
                     "kernels"}
INFERENCE_FIELDS = {"images_per_second", "best_seconds", "repeats", "rows", "device", "threads"}
# The costly imports a scratch job must not make (SciPy's linalg would load its own OpenBLAS beside NumPy's).
HEAVY = ("torch", "sklearn", "scipy", "pandas", "numba")

# A fresh interpreter's environment: this checkout's source, no progress bars, no venv scripts on PATH.
JOB_ENV = {"PYTHONPATH": str(REPO_ROOT / "src"), "TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"}
# Runs stages through the CLI in this interpreter, then prints the heavy packages it imported.
JOBS = """
import json, sys
from mnistbench.cli import main
for argv in {argvs!r}:
    assert main(["--quiet", *argv]) == 0, argv
print(json.dumps(sorted(set(sys.modules) & set({heavy!r}))))
"""


def run_jobs(workdir: Path, *argvs: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The `heavy` modules a fresh interpreter imported while running these CLI commands in `workdir`."""
    script = JOBS.format(argvs=[list(argv) for argv in argvs], heavy=heavy)
    result = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=300,
                            env=JOB_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A working folder with the fixture downloaded and prepared (the small pipeline's params, one seed)."""
    workdir = tmp_path_factory.mktemp("startup")
    params = {**SMALL_PARAMS, "seeds": [0],
              "data": {**SMALL_PARAMS["data"], "source": str(REPO_ROOT / "tests/fixtures/mnist_small.npz")}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    run_jobs(workdir, ["download"])
    run_jobs(workdir, ["prepare"])
    return workdir


@pytest.fixture(scope="module")
def scratch_job(prepared) -> tuple[list[str], dict, dict]:
    """(heavy packages imported, train record, eval record) of one scratch train job and one evaluate job."""
    imported = run_jobs(prepared, ["train", "--model", "scratch_adam", "--seed", "0"],
                        ["evaluate", "--model", "scratch_adam", "--seed", "0"])
    train, evaluation = (json.loads((prepared / f"reports/{kind}/scratch_adam/seed0.json").read_text())
                         for kind in ("train", "eval"))
    return imported, train, evaluation


def test_a_scratch_train_and_evaluate_job_imports_no_torch_scipy_or_sklearn(scratch_job):
    imported, _, _ = scratch_job
    assert imported == [], f"a scratch job imported {imported}"


def test_a_prepare_job_with_the_official_split_imports_no_sklearn(prepared, tmp_path):
    """scikit-learn (about a second of imports, with scipy.stats) splits only `split: shuffle` data."""
    workdir = shutil.copytree(prepared, tmp_path / "again")  # the clocks' order in `prepared` stays the pipeline's
    assert run_jobs(workdir, ["prepare"]) == []


def test_the_training_record_keeps_every_field(scratch_job):
    _, train, _ = scratch_job
    assert set(train) >= TRAIN_FIELDS, sorted(TRAIN_FIELDS - set(train))
    assert set(train["provenance"]) >= PROVENANCE_FIELDS, sorted(PROVENANCE_FIELDS - set(train["provenance"]))


def test_the_evaluation_record_keeps_every_field(scratch_job):
    _, _, evaluation = scratch_job
    assert set(evaluation) >= EVAL_FIELDS, sorted(EVAL_FIELDS - set(evaluation))
    assert set(evaluation["provenance"]) >= PROVENANCE_FIELDS
    assert set(evaluation["inference"]) >= INFERENCE_FIELDS
    assert evaluation["inference"]["repeats"] == SMALL_PARAMS["evaluate"]["throughput_repeats"]


def test_every_stage_leaves_its_job_clock_beside_its_log(prepared, scratch_job):
    _, train, _ = scratch_job
    clocks = {name: json.loads((prepared / "logs" / name).read_text())
              for name in ("download.job.json", "prepare.job.json", "train/scratch_adam/seed0.job.json")}
    assert clocks["download.job.json"]["started"] < clocks["prepare.job.json"]["started"] < train["job"]["started"]
    assert all(clock["seconds"] > 0 for clock in clocks.values())
    assert train["job"]["seconds"] >= train["wall_seconds"]


# A process that ends through exit_quickly: an exit handler and an unflushed write, then the code of its argument.
QUICK_EXIT = """
import atexit, sys, threading, time
from pathlib import Path
from mnistbench.quickexit import exit_quickly
atexit.register(lambda: Path("handler-ran").write_text("yes"))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), Path("thread-finished").write_text("yes"))).start()
sys.stdout.write("no newline, still buffered")
exit_quickly(3)
"""


@pytest.mark.parametrize("case", ["alone", "thread"])
def test_a_quick_exit_runs_the_exit_handlers_flushes_and_keeps_the_code(tmp_path, case):
    """Skipping the interpreter's teardown keeps what an ordinary exit does for the user: the atexit handlers
    (logging's flush), the buffered output, the exit code, and the wait for a thread that is still running."""
    result = subprocess.run([sys.executable, "-c", QUICK_EXIT, case], cwd=tmp_path, capture_output=True, text=True,
                            env=JOB_ENV, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (3, "no newline, still buffered", "")
    assert (tmp_path / "handler-ran").read_text() == "yes"
    assert (tmp_path / "thread-finished").exists() == (case == "thread")


def test_the_console_script_ends_through_the_quick_exit_with_its_log_complete(prepared, tmp_path):
    """`mnistbench` (the entry point DVC and Snakemake run) and `python -m mnistbench` end in exit_quickly, with
    main()'s code, and the log's last line written."""
    from importlib.metadata import entry_points

    assert next(iter(entry_points(group="console_scripts", name="mnistbench"))).value == "mnistbench.cli:run"
    workdir = shutil.copytree(prepared, tmp_path / "again")
    for argv, code, last_line in ((["prepare"], 0, "mnistbench prepare done in"),
                                  (["--params", "nowhere.yaml", "prepare"], 2, "nowhere.yaml does not exist")):
        result = subprocess.run([sys.executable, "-m", "mnistbench", "--log", "logs/quick.log", *argv], cwd=workdir,
                                capture_output=True, text=True, timeout=120, env=JOB_ENV)
        assert result.returncode == code, result.stderr
        assert last_line in (workdir / "logs/quick.log").read_text().splitlines()[-1]
    assert len(result.stderr.splitlines()) == 1 and "nowhere.yaml" in result.stderr, result.stderr


def test_run_hands_main_s_code_to_the_quick_exit(monkeypatch):
    from mnistbench import cli

    codes = []
    monkeypatch.setattr(cli, "exit_quickly", codes.append)
    monkeypatch.setattr(sys, "argv", ["mnistbench", "--params", "nowhere.yaml", "prepare"])
    cli.run()
    assert codes == [2]
