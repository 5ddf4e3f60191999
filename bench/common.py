"""What both benchmarks share: the rows they time, the Adam recipe, and backends set up as the CLI sets them up."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistbench.backends import Backend, backend_class, make_backend
from mnistbench.io import load_npz
from mnistbench.params import NetworkParams, RunParams
from mnistbench.paths import Layout
from mnistbench.training import initial_weights

REPO = Path(__file__).resolve().parents[1]


def training_rows(rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows, 784) float32 images and (rows,) int64 labels: the prepared training set, else random data."""
    path = REPO / Layout().prepared_split("train")
    if path.is_file():
        train_set = load_npz(path)
        if len(train_set["labels"]) >= rows:
            return train_set["images"][:rows], train_set["labels"][:rows].astype(np.int64), "data/prepared/train.npz"
    rng = np.random.default_rng(0)
    return rng.random((rows, 784), dtype=np.float32), rng.integers(0, 10, rows).astype(np.int64), "random float32"


def adam_run(impl: str, batch_size: int, device: str = "cpu") -> RunParams:
    """The default Adam recipe (lr 1e-3) for one epoch at `batch_size` on `impl`."""
    return RunParams(name=f"bench_{impl}_{device}", impl=impl, optimizer="adam", lr=1e-3, beta1=0.9, beta2=0.999,
                     eps=1e-8, weight_decay=0.0, epochs=1, batch_size=batch_size, device=device)


def backend_for(run: RunParams, network: NetworkParams, images: np.ndarray, labels: np.ndarray,
                threads: int) -> Backend:
    """A backend from seed 0's shared initial weights, with the process settings a `mnistbench train` job has."""
    backend_class(run).configure_process(threads)
    return make_backend(run, network, initial_weights(0, network), images, labels, threads)
