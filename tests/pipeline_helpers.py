"""Helpers for the end-to-end tests: a small pipeline in a temporary git repository, and running the tools there.

Imported by the end-to-end test modules (pytest puts tests/ on sys.path); conftest.py makes the session's
`fresh_repo` and `built_repo` of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import preloaded_tools
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = preloaded_tools.BIN  # this venv's scripts

# The small pipeline of the end-to-end tests: the 800-row fixture, 2 seeds, 2 epochs, a 16-unit network.
SMALL_PARAMS = {
    "data": {"source": "tests/fixtures/mnist_small.npz", "split": "official", "test_fraction": 0.2,
             "split_seed": 42, "n_train": 400, "n_val": 100, "n_test": 200, "normalize": "unit"},
    "network": {"hidden": 16, "activation": "relu", "init": "xavier_uniform", "dtype": "float32"},
    "seeds": [0, 1],
    "models": {
        "scratch_sgd": {"impl": "scratch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False,
                        "weight_decay": 0.0, "epochs": 2, "batch_size": 64, "schedule": {"name": "constant"}},
        "scratch_adam": {"impl": "scratch", "optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                         "eps": 1.0e-8, "weight_decay": 0.0, "epochs": 2, "batch_size": 64,
                         "schedule": {"name": "constant"}},
        "torch_adam": {"impl": "torch", "optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                       "eps": 1.0e-8, "weight_decay": 0.0, "epochs": 2, "batch_size": 64,
                       "schedule": {"name": "constant"}, "device": "cpu"},
    },
    "evaluate": {"worst_mistakes": 4, "throughput_repeats": 2, "target_accuracy": 0.97},
}
ALL_JOBS = (
    {("download", None, None), ("prepare", None, None), ("report", None, None)}
    | {(rule, model, seed) for rule in ("train", "evaluate") for model in SMALL_PARAMS["models"] for seed in (0, 1)}
)


def venv_env(**extra: str) -> dict[str, str]:
    """This process's environment with this venv's scripts first on PATH, and `extra` on top."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def run(repo: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    env = venv_env(TQDM_DISABLE="1", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="test",
                   GIT_AUTHOR_EMAIL="test@example.invalid", GIT_COMMITTER_NAME="test",
                   GIT_COMMITTER_EMAIL="test@example.invalid")
    if preloaded_tools.wanted(command, env):
        result = preloaded_tools.run(command, repo, env, timeout=600)
    else:
        result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def snakemake_dry_run_jobs(repo: Path, *extra: str) -> set[tuple]:
    """(rule, model, seed) of every job `snakemake -n` would run."""
    result = run(repo, "snakemake", "--cores", "2", "-n", *extra)
    return parse_snakemake_jobs(result.stdout + result.stderr)[0]


def parse_snakemake_jobs(text: str) -> tuple[set[tuple], dict[tuple, dict]]:
    """Jobs of a Snakemake dry run (printed with -p): {(rule, model, seed)} and each job's fields."""
    jobs: dict[tuple, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if not header or header.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, flags=re.MULTILINE))
        wildcards = dict(re.findall(r"(\w+)=([\w.]+)", fields.get("wildcards", "")))
        seed = wildcards.get("seed")
        key = (header.group(1), wildcards.get("model"), int(seed) if seed is not None else None)
        command = re.search(r"^(?:Shell command: )?(mnistbench .*)$", block, flags=re.MULTILINE)
        fields["cmd"] = command.group(1) if command else None
        jobs[key] = fields
    return set(jobs), jobs


def dvc_repro_ran(repo: Path) -> set[tuple]:
    """Run `dvc repro` and return the (rule, model, seed) of the stages it ran."""
    result = run(repo, "dvc", "repro")
    return {dvc_stage_key(name) for name in re.findall(r"Running stage '([^']+)'", result.stdout)}


def dvc_stage_key(name: str) -> tuple:
    stage, _, item = name.partition("@")
    if not item:
        return (stage, None, None)
    model, _, seed = item.rpartition("-")
    return (stage, model, int(seed))


def copy_repo(source: Path, target: Path) -> Path:
    """A copy of a workspace, git history, tools' records and DVC cache included, with the file times that Snakemake
    decides by (copy2 and copystat keep them); a fraction of a second where a build takes a minute."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return target


def make_fresh_repo(repo: Path, params: dict) -> Path:
    """A git repository at `repo` with this project's files, `params` as params.yaml, and no outputs."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(("data/", "reports/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    write_params(repo, params)
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "fixture pipeline")
    return repo
