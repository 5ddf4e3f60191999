"""The end-to-end tests' preloaded `snakemake` and `dvc` (tests/preloaded_tools.py) give what a process of their own
gives: the same exit code and the same output, in the command's directory, killed past its timeout."""

from __future__ import annotations

import re
import subprocess

import preloaded_tools
import pytest
from pipeline_helpers import copy_repo, run, venv_env

pytestmark = pytest.mark.slow

# Snakemake's header names the moment and a fresh workflow id, and the order of its jobs and of the sets its lines
# list follows the process's string hashes: two runs of one command differ by these, each in a process of its own
# too. So outputs are compared as the multisets of their lines, each line's list sorted.
MOMENT = re.compile(r"^(  Date: |  Workflow ID: |\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]$).*$", re.MULTILINE)


def normalized(output: str) -> list[str]:
    """The output's lines, sorted, without its moments, each line's comma-separated list sorted."""
    lines = []
    for line in MOMENT.sub("", output).splitlines():
        head, colon, listing = line.rpartition(": ")
        lines.append(f"{head}{colon}{', '.join(sorted(listing.split(', ')))}")
    return sorted(lines)

COMMANDS = [
    ("snakemake", "--cores", "2", "-n"),
    ("snakemake", "--lint"),
    ("snakemake", "--cores", "1", "no_such_target"),
    ("dvc", "status", "--json"),
    ("dvc", "repro", "--dry"),
    ("dvc", "no-such-command"),
]


@pytest.fixture
def edited_repo(built_repo, tmp_path):
    """The built pipeline with an lr edited: something for the dry runs to plan."""
    repo = copy_repo(built_repo, tmp_path / "repo")
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("lr: 0.1\n", "lr: 0.05\n", 1))
    return repo


def run_both(repo, command, monkeypatch):
    monkeypatch.setenv("MNISTBENCH_TESTS_PRELOAD", "0")
    own = run(repo, *command, check=False)
    monkeypatch.delenv("MNISTBENCH_TESTS_PRELOAD")
    preloaded = run(repo, *command, check=False)
    return own, preloaded


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_preloaded_command_exits_and_prints_as_its_own_process(edited_repo, command, monkeypatch):
    own, preloaded = run_both(edited_repo, command, monkeypatch)
    assert preloaded.returncode == own.returncode
    assert normalized(preloaded.stdout) == normalized(own.stdout)
    assert normalized(preloaded.stderr) == normalized(own.stderr)
    assert own.stdout + own.stderr, "the command printed nothing: the comparison proves little"


def test_snakemake_s_dvc_verdict_fails_as_in_a_process_of_its_own(edited_repo, monkeypatch):
    """The verdict (`python -m mnistbench.dvc_record --status`) runs in a fork of the preloaded Snakemake: when DVC
    fails there, Snakemake stops with the same message and exit code as when it ran as a process of its own."""
    (edited_repo / ".dvc" / "config.local").write_text("[core]\n    no_such_option = 1\n")
    own, preloaded = run_both(edited_repo, ("snakemake", "--cores", "2", "-n"), monkeypatch)
    assert own.returncode != 0 and "no_such_option" in own.stdout + own.stderr
    assert preloaded.returncode == own.returncode
    assert normalized(preloaded.stdout) == normalized(own.stdout)
    assert normalized(preloaded.stderr) == normalized(own.stderr)


def test_snakemake_names_the_command_s_directory_as_its_run_directory(edited_repo, monkeypatch):
    """Snakemake reads the working directory when it is imported; the server imported it elsewhere."""
    _, preloaded = run_both(edited_repo, ("snakemake", "--cores", "2", "-n"), monkeypatch)
    assert f"Run directory: {edited_repo.resolve()}\n" in preloaded.stdout + preloaded.stderr


def test_a_command_past_its_timeout_is_killed(tmp_path):
    (tmp_path / "Snakefile").write_text('rule wait:\n    shell: "sleep 30"\n')
    env = venv_env()
    with pytest.raises(subprocess.TimeoutExpired):
        preloaded_tools.run(("snakemake", "--cores", "1"), tmp_path, env, timeout=3)


def test_only_this_venv_s_snakemake_and_dvc_are_preloaded(monkeypatch):
    env = venv_env()
    assert preloaded_tools.wanted(("snakemake", "-n"), env) and preloaded_tools.wanted(("dvc", "status"), env)
    assert not preloaded_tools.wanted(("git", "status"), env)
    assert not preloaded_tools.wanted(("snakemake", "-n"), {**env, "PATH": "/usr/bin"})
    monkeypatch.setenv("MNISTBENCH_TESTS_PRELOAD", "0")
    assert not preloaded_tools.wanted(("snakemake", "-n"), env)
