"""Everything the report reads, gathered in one place: per-run train and eval records, data provenance, images.

A missing file stops the report with one line naming it (MnistbenchError from mnistbench.io), never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistbench.errors import MnistbenchError
from mnistbench.io import load_npz, read_json
from mnistbench.params import Params
from mnistbench.paths import Layout

NEEDED_BY = "the report"


@dataclass(frozen=True)
class RunRecords:
    """The two records of one (model, seed): what training wrote and what evaluation wrote."""

    model: str
    seed: int
    train: dict[str, Any]
    evaluation: dict[str, Any]

    @property
    def status(self) -> str:
        """"ok" only when both training and evaluation say so; otherwise "diverged"."""
        statuses = {self.train.get("status", "ok"), self.evaluation.get("status", "ok")}
        return "ok" if statuses == {"ok"} else "diverged"

    @property
    def diverged_epoch(self) -> int | None:
        return self.train.get("diverged_epoch") or self.evaluation.get("diverged_epoch")


@dataclass(frozen=True)
class ReportInputs:
    """runs: one RunRecords per (model, seed), in params order (models, then seeds).

    mnist_images: (70000, 784) uint8, the downloaded array (the worst mistakes index into it); mnist_labels: (70000,).
    layout: where they were read, which also gives the repository's own params.yaml.
    """

    runs: list[RunRecords]
    source: dict[str, Any]
    stats: dict[str, Any]
    mnist_images: np.ndarray
    mnist_labels: np.ndarray
    layout: Layout

    def runs_of(self, model: str) -> list[RunRecords]:
        return [run for run in self.runs if run.model == model]


def load_inputs(params: Params, layout: Layout) -> ReportInputs:
    """Read every input of the report for the models and seeds of `params`."""
    runs = [
        RunRecords(
            model=model,
            seed=seed,
            train=read_json(layout.train_report(model, seed), NEEDED_BY),
            evaluation=read_json(layout.eval_report(model, seed), NEEDED_BY),
        )
        for model in params.models
        for seed in params.seeds
    ]
    mnist = load_npz(layout.raw_npz, NEEDED_BY)
    missing = {"images", "labels"} - set(mnist)
    if missing:
        raise MnistbenchError(f"{layout.raw_npz} lacks array(s) {sorted(missing)}: expected images and labels")
    return ReportInputs(
        runs=runs,
        source=read_json(layout.source_json, NEEDED_BY),
        stats=read_json(layout.stats_json, NEEDED_BY),
        mnist_images=mnist["images"],
        mnist_labels=mnist["labels"],
        layout=layout,
    )
