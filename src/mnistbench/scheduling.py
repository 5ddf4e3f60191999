"""How long a job is expected to take, so that Snakemake starts the longest ready job first.

Snakemake's scheduler picks among the ready jobs by their `priority`, then by the size of their inputs, which is the
same for every train job: so it started the three ~10 s torch trains of the default pipeline in no useful order,
often last, and one core then ran the last of them alone while the other had nothing left. Longest first (the
LPT rule) leaves only short jobs for the end. The order is all that matters here, never a result: the seconds are
a model of one job on one thread of this repository's 2-core machine (bench/results/step.md and jobs.md, batch 32
and 128, 784-128-10), not a promise.

    seconds = epochs * (rows * per_row + steps * per_step) + start      (a train job)
    seconds = start                                                       (an evaluate job: 10,000 rows, ~25 ms)
"""

from __future__ import annotations

from typing import Any

from mnistbench.scratch.schedules import steps_per_epoch

# impl: (seconds per training row, seconds per optimizer step beyond its rows, seconds to start a job)
TRAIN_COSTS = {"scratch": (3.5e-6, 130e-6, 0.7), "torch": (4.4e-6, 670e-6, 2.5)}
EVALUATE_START = {"scratch": 0.45, "torch": 1.3}


def expected_seconds(stage: str, run: dict[str, Any], n_train: int) -> float:
    """A job's expected wall time: stage "train" or "evaluate"; run: the model's params (models.NAME), as a mapping;
    n_train: data.n_train."""
    if stage == "evaluate":
        return EVALUATE_START[run["impl"]]
    per_row, per_step, start = TRAIN_COSTS[run["impl"]]
    steps = steps_per_epoch(n_train, run["batch_size"])
    return run["epochs"] * (n_train * per_row + steps * per_step) + start
