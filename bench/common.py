"""What both benchmarks share: the rows they time, the Adam recipe, and backends set up as the CLI sets them up."""

from __future__ import annotations

from collections.abc import Callable
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
    """The default Adam recipe (lr 1e-3) at `batch_size` on `impl`."""
    adam = {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    return recipe_run(impl, batch_size, adam, device)


# A run is timed an epoch at a time, within a job of the default length (its schedule spans these epochs), so the
# epochs timed are those of a default job.
JOB_EPOCHS = 15


def recipe_run(impl: str, batch_size: int, recipe: dict, device: str = "cpu") -> RunParams:
    """A default-length job at `batch_size` on `impl` of `recipe` (optimizer and its keys, as in a `models` entry)."""
    return RunParams(name=f"bench_{impl}_{device}", impl=impl, epochs=JOB_EPOCHS, batch_size=batch_size,
                     device=device, **recipe)


def test_rows() -> tuple[np.ndarray, np.ndarray, str]:
    """(n, 784) float32 test images and (n,) int64 labels: data/prepared/test.npz, else 1,000 random rows."""
    path = REPO / Layout().prepared_split("test")
    if path.is_file():
        test_set = load_npz(path)
        return test_set["images"], test_set["labels"].astype(np.int64), "data/prepared/test.npz"
    rng = np.random.default_rng(1)
    return rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000).astype(np.int64), "random float32"


def backend_for(run: RunParams, network: NetworkParams, images: np.ndarray, labels: np.ndarray,
                threads: int) -> Backend:
    """A backend from seed 0's shared initial weights, with the process settings a `mnistbench train` job has."""
    backend_class(run).configure_process(threads)
    return make_backend(run, network, initial_weights(0, network), images, labels, threads)


def matmul_epochs(images: np.ndarray, batch_size: int, epochs: int, hidden: int = 128) -> Callable[[], None]:
    """A run of only the five matrix products per step (forward x@w1, h@w2; backward h.T@d, d@w2.T, x.T@dh) of a
    784-hidden-10 network over `epochs` epochs of `images` (n, 784) float32, outputs preallocated: the floor the
    scratch step is measured against (batch_size 0 = full batch)."""
    rng = np.random.default_rng(0)
    classes = 10
    w1 = rng.random((784, hidden), dtype=np.float32)
    w2 = rng.random((hidden, classes), dtype=np.float32)
    grad_w1, grad_w2 = np.empty_like(w1), np.empty_like(w2)
    size = batch_size or len(images)
    starts = range(0, len(images), size)
    buffers = {}
    for start in starts:
        rows = min(size, len(images) - start)
        if rows not in buffers:
            buffers[rows] = [np.empty((rows, hidden), np.float32), np.empty((rows, classes), np.float32),
                             np.empty((rows, hidden), np.float32)]

    def run_once() -> None:
        for _ in range(epochs):
            for start in starts:
                x = images[start : start + size]
                h, d, dh = buffers[len(x)]
                np.matmul(x, w1, out=h)
                np.matmul(h, w2, out=d)
                np.matmul(h.T, d, out=grad_w2)
                np.matmul(d, w2.T, out=dh)
                np.matmul(x.T, dh, out=grad_w1)

    return run_once
