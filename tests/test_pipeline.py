"""End to end: Snakemake and DVC run the same pipeline on a small fixture and rerun exactly what an edit touches.

Each test works in a temporary git repository holding a copy of this one, with `data.source` pointing at
tests/fixtures/mnist_small.npz and tiny sizes. One full Snakemake run per session builds a base repository
(`built_repo`, tests/conftest.py); tests copy it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import (
    ALL_JOBS,
    SMALL_PARAMS,
    copy_repo,
    dvc_repro_ran,
    dvc_stage_key,
    parse_snakemake_jobs,
    run,
    snakemake_dry_run_jobs,
    venv_env,
    write_params,
)

from mnistbench.scheduling import expected_seconds
from mnistbench.stages import DVC_STALE_MARKER, STAGE_CODE, stage_code_files

pytestmark = pytest.mark.slow

@pytest.fixture
def work_repo(built_repo, tmp_path) -> Path:
    return copy_repo(built_repo, tmp_path / "repo")


def test_snakemake_builds_everything_and_dvc_agrees(built_repo):
    assert (built_repo / "reports" / "report.html").is_file()
    for model in SMALL_PARAMS["models"]:
        for seed in SMALL_PARAMS["seeds"]:
            assert (built_repo / "reports" / "eval" / model / f"seed{seed}.json").is_file()
    assert "up to date" in run(built_repo, "dvc", "status").stdout
    assert snakemake_dry_run_jobs(built_repo) == set()


def test_dvc_repro_after_snakemake_does_nothing(work_repo):
    assert dvc_repro_ran(work_repo) == set()


def test_download_and_prepare_alone_through_both_tools(fresh_repo, tmp_path):
    snake = copy_repo(fresh_repo, tmp_path / "snake")
    run(snake, "snakemake", "--cores", "2", "prepare")
    assert (snake / "data" / "prepared" / "stats.json").is_file()
    assert not (snake / "data" / "models").exists()
    assert snakemake_dry_run_jobs(snake, "prepare") == set()

    dvc = copy_repo(fresh_repo, tmp_path / "dvc")
    result = run(dvc, "dvc", "repro", "prepare")
    assert set(re.findall(r"Running stage '([^']+)'", result.stdout)) == {"download", "prepare"}
    for name in ("raw/mnist.npz", "prepared/train.npz", "prepared/val.npz", "prepared/test.npz"):
        assert (snake / "data" / name).read_bytes() == (dvc / "data" / name).read_bytes(), name


def _edit_lr(params):
    params["models"]["scratch_sgd"]["lr"] = 0.05


def _edit_normalize(params):
    params["data"]["normalize"] = "standard"


def _add_seed(params):
    params["seeds"] = [0, 1, 2]


def _add_model(params):
    params["models"]["torch_sgd"] = {"impl": "torch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                                     "nesterov": False, "weight_decay": 0.0, "epochs": 2, "batch_size": 64,
                                     "schedule": {"name": "constant"}, "device": "cpu"}


def _edit_beta1(params):
    """beta1 had a default in the schema once, which neither tool saw; now it stands in params.yaml."""
    params["models"]["scratch_adam"]["beta1"] = 0.8


def _edit_evaluate(params):
    params["evaluate"]["worst_mistakes"] = 2


EDITS = {
    "beta1": (_edit_beta1, {(rule, "scratch_adam", seed) for rule in ("train", "evaluate") for seed in (0, 1)}
              | {("report", None, None)}),
    "evaluate": (_edit_evaluate, {("evaluate", model, seed) for model in SMALL_PARAMS["models"] for seed in (0, 1)}
                 | {("report", None, None)}),
    "lr": (_edit_lr, {(rule, "scratch_sgd", seed) for rule in ("train", "evaluate") for seed in (0, 1)}
           | {("report", None, None)}),
    "normalize": (_edit_normalize, ALL_JOBS - {("download", None, None)}),
    "new_seed": (_add_seed, {(rule, model, 2) for rule in ("train", "evaluate") for model in SMALL_PARAMS["models"]}
                 | {("report", None, None)}),
    "new_model": (_add_model, {(rule, "torch_sgd", seed) for rule in ("train", "evaluate") for seed in (0, 1)}
                  | {("report", None, None)}),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_param_edit_reruns_the_same_exact_jobs_in_both_tools(work_repo, edit):
    change, expected = EDITS[edit]
    params = yaml.safe_load((work_repo / "params.yaml").read_text())
    change(params)
    write_params(work_repo, params)
    assert snakemake_dry_run_jobs(work_repo) == expected
    assert dvc_repro_ran(work_repo) == expected
    assert snakemake_dry_run_jobs(work_repo) == set()


def test_dvc_repro_from_scratch_then_snakemake_has_nothing_to_do(fresh_repo, tmp_path):
    repo = copy_repo(fresh_repo, tmp_path / "repo")
    assert dvc_repro_ran(repo) == ALL_JOBS
    assert snakemake_dry_run_jobs(repo) == set()


def test_push_pull_round_trip_restores_everything_without_rerun(work_repo, tmp_path):
    tracked = sorted(p.relative_to(work_repo) for p in (work_repo / "data").rglob("*.npz"))
    before = {path: (work_repo / path).read_bytes() for path in tracked}
    run(work_repo, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run(work_repo, "dvc", "push")
    for path in tracked:
        (work_repo / path).unlink()
    (work_repo / "reports" / "report.html").unlink()
    shutil.rmtree(work_repo / ".dvc" / "cache")
    run(work_repo, "dvc", "pull")
    assert {path: (work_repo / path).read_bytes() for path in tracked} == before
    assert (work_repo / "reports" / "report.html").is_file()
    assert "up to date" in run(work_repo, "dvc", "status").stdout
    assert snakemake_dry_run_jobs(work_repo) == set()
    assert snakemake_dry_run_jobs(work_repo, "--workflow-profile", "workflow/profiles/default") == set()


def test_interrupted_training_leaves_nothing_and_a_rerun_completes(work_repo):
    params = yaml.safe_load((work_repo / "params.yaml").read_text())
    params["models"]["scratch_adam"]["epochs"] = 100_000
    write_params(work_repo, params)
    weights = work_repo / "data" / "models" / "scratch_adam" / "seed0.npz"
    weights.unlink()
    env = venv_env()
    job = subprocess.Popen(["mnistbench", "--quiet", "train", "--model", "scratch_adam", "--seed", "0"],
                           cwd=work_repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not weights.exists()
    assert not list(work_repo.rglob("*.part"))

    params["models"]["scratch_adam"]["epochs"] = 2
    write_params(work_repo, params)
    run(work_repo, "snakemake", "--cores", "2")
    assert weights.is_file()
    assert snakemake_dry_run_jobs(work_repo) == set()


def test_failing_job_names_its_log_and_keeps_finished_work(work_repo):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to make device: cuda fail")
    params = yaml.safe_load((work_repo / "params.yaml").read_text())
    params["models"]["torch_adam"]["device"] = "cuda"
    params["models"]["scratch_sgd"]["lr"] = 0.05
    write_params(work_repo, params)
    result = run(work_repo, "snakemake", "--cores", "2", "--keep-going", check=False)
    assert result.returncode != 0
    assert "logs/train/torch_adam/seed0.log" in result.stdout + result.stderr
    assert "CUDA" in (work_repo / "logs" / "train" / "torch_adam" / "seed0.log").read_text()
    assert run(work_repo, "snakemake", "--cores", "2", "-n", "reports/eval/scratch_sgd/seed1.json").stdout.count(
        "rule ") == 0


def test_snakemake_and_dvc_define_the_same_stages(fresh_repo):
    """Same commands, inputs and outputs per job (params agree by behaviour: see the edit tests)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    dry = run(fresh_repo, "snakemake", "--cores", "2", "-n", "-p", "--forceall")
    _, snake_jobs = parse_snakemake_jobs(dry.stdout + dry.stderr)
    with Repo(str(fresh_repo)) as repo:
        dvc_stages = {dvc_stage_key(stage.name): stage for stage in repo.index.stages}
    assert set(snake_jobs) == set(dvc_stages) == ALL_JOBS
    code_dirs = {entry for entries in STAGE_CODE.values() for entry in entries if (fresh_repo / entry).is_dir()}
    params = yaml.safe_load((fresh_repo / "params.yaml").read_text())
    for key, stage in dvc_stages.items():
        snake = snake_jobs[key]
        assert " ".join(stage.cmd.split()) == snake["cmd"], key
        dvc_deps = set()
        for dep in stage.deps:
            if isinstance(dep, ParamsDependency):
                continue
            path = str(dep.def_path)
            if path in code_dirs:
                dvc_deps |= set(stage_code_files_for(fresh_repo, path))
            elif (fresh_repo / path).is_dir() or path in ("reports/train", "reports/eval"):
                dvc_deps |= {f for f in _split(snake["input"]) if f.startswith(path + "/")}
            else:
                dvc_deps.add(path)
        assert dvc_deps == set(_split(snake["input"])) - {DVC_STALE_MARKER}, key
        dvc_outs = {str(out.def_path) for out in stage.outs}
        assert dvc_outs == set(_split(snake["output"])), key
        assert float(snake.get("priority", 0)) == pytest.approx(job_priority(params, key), rel=1e-4), key


def job_priority(params: dict, key: tuple) -> float:
    """The priority a job of the Snakefile should carry under `params` (params.yaml as read): its expected seconds for
    a train or evaluate job, else 0."""
    rule, model, _ = key
    if rule not in ("train", "evaluate"):
        return 0.0
    return expected_seconds(rule, params["models"][model], params["data"]["n_train"])


def stage_code_files_for(repo: Path, folder: str) -> list[str]:
    stage = next(name for name, entries in STAGE_CODE.items() if folder in entries)
    return [f for f in stage_code_files(stage, repo) if f.startswith(folder + "/")]


def _split(listing: str) -> list[str]:
    return [item.strip() for item in listing.split(",") if item.strip()]


def test_a_snakemake_file_target_records_only_what_it_built_in_dvc(work_repo):
    params = yaml.safe_load((work_repo / "params.yaml").read_text())
    _edit_lr(params)
    write_params(work_repo, params)
    run(work_repo, "snakemake", "--cores", "2", "reports/eval/scratch_sgd/seed0.json")
    changed = set(re.findall(r"^(\S+):$", run(work_repo, "dvc", "status").stdout, flags=re.MULTILINE))
    assert changed == {"train@scratch_sgd-1", "evaluate@scratch_sgd-1", "report"}
