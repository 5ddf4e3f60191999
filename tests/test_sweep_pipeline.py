"""End to end on the fixture: a sweep of two optimizers on warmup + cosine, written by `mnistbench sweep`, runs
through Snakemake as ordinary models, DVC then has nothing to do, and the report selects on validation, draws the
sensitivity figures (a learning rate; a weight decay with 0 among its values) and the learning-rate schedule."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from pipeline_helpers import BIN, copy_repo, run, write_params

pytestmark = pytest.mark.slow
COSINE = {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}


@pytest.fixture(scope="module")
def swept_repo(built_repo, tmp_path_factory):
    """The built fixture pipeline turned into two optimizers on warmup + cosine, with a sweep of each, and run:
    Snakemake reruns the two edited base models and runs the new members; torch_adam's jobs stay as built."""
    repo = copy_repo(built_repo, tmp_path_factory.mktemp("swept") / "repo")
    # Nesterov momentum and AdamW on warmup + cosine, three members each; torch_adam stays a family of one.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["scratch_sgd"] |= {"momentum": 0.9, "nesterov": True, "schedule": COSINE}
    params["models"]["scratch_adam"] |= {"optimizer": "adamw", "weight_decay": 0.01, "schedule": COSINE}
    write_params(repo, params)
    run(repo, "git", "commit", "-qam", "two optimizers on warmup + cosine")
    run(repo, str(BIN / "mnistbench"), "--quiet", "sweep", "scratch_sgd", "--set", "lr=0.01,1.0")
    run(repo, str(BIN / "mnistbench"), "--quiet", "sweep", "scratch_adam", "--set", "weight_decay=0,1e-4")
    run(repo, "snakemake", "--cores", "2")
    return repo


def test_snakemake_runs_the_sweep_and_dvc_repro_has_nothing_to_do(swept_repo):
    assert len(list((swept_repo / "reports" / "train").glob("*/seed*.json"))) == 7 * 2
    result = run(swept_repo, "dvc", "repro")
    assert "Running stage" not in result.stdout
    assert run(swept_repo, "dvc", "status").stdout.strip() in ("", "Data and pipelines are up to date.")


def test_report_selects_on_validation_and_has_the_sensitivity_figure(swept_repo):
    metrics = json.loads((swept_repo / "reports" / "metrics.json").read_text())
    for name, family in metrics["families"].items():
        means = {}
        for model in family["members"]:
            folder = swept_repo / "reports" / "train" / model
            records = [json.loads(path.read_text()) for path in folder.glob("*.json")]
            if all(record["status"] == "ok" for record in records):
                means[model] = sum(record["history"][-1]["val_accuracy"] for record in records) / len(records)
        best = max(means.values())
        assert family["selected"] in {model for model, mean in means.items() if abs(mean - best) < 1e-12}, name
    assert len(metrics["families"]["scratch_adam"]["members"]) == 3
    html = (swept_repo / "reports" / "report.html").read_text()
    assert re.search(r'<img alt="sensitivity to lr: scratch_sgd" data-scale="log scale"', html)
    assert re.search(r'<img alt="sensitivity to weight_decay: scratch_adam" data-scale="symlog scale: linear from 0 '
                     r'to 0.0001, log beyond"', html)
    assert '<img alt="learning rate against step" src="data:image/png;base64,' in html
    assert re.search(r'<td class="text small recipe">scratch SGD lr [^,]+, momentum 0.9, Nesterov, cosine \(warmup 1 '
                     r'ep, min 0\), batch 64, 2 epochs</td>', html)
    assert re.search(r'<td class="text small recipe">scratch AdamW lr 1e-3, (wd [^,]+, )?cosine', html)
    summary = json.loads((swept_repo / "reports" / "summary.json").read_text())
    assert set(summary) == set(metrics["models"])


def test_clearing_the_sweeps_gives_the_committed_params_back(swept_repo, tmp_path):
    repo = copy_repo(swept_repo, tmp_path / "repo")
    for base in ("scratch_sgd", "scratch_adam"):
        run(repo, str(BIN / "mnistbench"), "--quiet", "sweep", "--clear", base)
    assert subprocess.run(["git", "diff", "--quiet", "params.yaml"], cwd=repo).returncode == 0
