"""Snakemake starts the longest ready job first: the expected seconds of mnistbench.scheduling order the jobs."""

from __future__ import annotations

import yaml
from pipeline_helpers import REPO_ROOT

from mnistbench.scheduling import expected_seconds


def test_the_default_jobs_are_ordered_longest_first():
    """torch trains (~10 s) before scratch SGD at batch 32 (~8 s) before scratch Adam at batch 128 (~5.6 s), every
    train before every evaluate, and torch's evaluate (which imports torch) before scratch's."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    models, n_train = params["models"], params["data"]["n_train"]
    train = {name: expected_seconds("train", run, n_train) for name, run in models.items()}
    evaluate = {name: expected_seconds("evaluate", run, n_train) for name, run in models.items()}
    assert sorted(train, key=train.get, reverse=True) == ["torch_adam", "scratch_sgd", "scratch_adam"]
    assert min(train.values()) > max(evaluate.values())
    assert evaluate["torch_adam"] > evaluate["scratch_adam"] == evaluate["scratch_sgd"]


def test_more_epochs_smaller_batches_and_more_rows_take_longer():
    run = {"impl": "scratch", "epochs": 10, "batch_size": 128}
    base = expected_seconds("train", run, 55_000)
    assert expected_seconds("train", {**run, "epochs": 20}, 55_000) > base
    assert expected_seconds("train", {**run, "batch_size": 32}, 55_000) > base
    assert expected_seconds("train", {**run, "batch_size": 0}, 55_000) < base  # full batch: one step an epoch
    assert expected_seconds("train", run, 1_000) < base
