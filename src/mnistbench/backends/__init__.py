"""Backends: one implementation each of the MLP with its optimizer and schedule, behind one protocol.

The training loop (`mnistbench.training`) and the evaluate stage (`mnistbench.evaluation`) see only the
`Backend` protocol; `make_backend` picks the implementation named by a `models` entry's `impl`. A new
backend (CuPy, JAX) is one module here holding a class that follows the protocol, plus one line in `MODULES`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Protocol

import numpy as np

from mnistbench.errors import one_of
from mnistbench.params import NetworkParams, RunParams

N_INPUTS = 784
N_CLASSES = 10

# impl -> the module holding its `BACKEND` class; imported on first use, since importing torch takes seconds.
MODULES = {
    "scratch": "mnistbench.backends.scratch",
    "torch": "mnistbench.backends.torch",
}


class Backend(Protocol):
    """One implementation of the MLP, its optimizer and its schedule, holding its own copy of the training rows.

    Constructed as `Backend(run, weights, images, labels, dtype, threads, activation)`: run, one `models` entry;
    weights, the shared layout of L dense layers w1 (784, h1), b1 (h1,), ..., wL (h_{L-1}, 10), bL (10,) (L = 2 for
    `hidden: 128`: w1 (784, 128), b1 (128,), w2 (128, 10), b2 (10,)); images (n, 784) float; labels (n,) int64;
    dtype float32 or float64; threads, CPU threads for the library's own thread pool; activation relu | tanh |
    sigmoid. The learning rate of each step follows `run.schedule` over run.epochs epochs of
    ceil(n / batch_size) steps (mnistbench.scratch.schedules).
    """

    device_name: str

    @staticmethod
    def configure_process(threads: int) -> None:
        """Process-wide settings this backend needs for speed and determinism; called once by the CLI."""
        ...

    def train_epoch(self, batches: list[np.ndarray]) -> np.ndarray:
        """Run one optimizer step per batch, in order.

        batches: int64 index arrays into the training rows the backend was built with.
        Returns the loss of each batch as float64, shape (len(batches),); it may stop early and return
        fewer losses once a loss is not finite.
        """
        ...

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """images: (n, 784) float32 -> logits (n, 10) as a NumPy array."""
        ...

    def weights(self) -> dict[str, np.ndarray]:
        """Current parameters in the shared layout: w1 (784, h1), b1 (h1,), ..., wL (h_{L-1}, 10), bL (10,)."""
        ...

    def learning_rates(self) -> np.ndarray:
        """The learning rate each optimizer step so far used, in order: float64 (steps taken,)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What runs the model: implementation, device, library versions, determinism settings."""
        ...


def backend_class(run: RunParams) -> type[Backend]:
    """The class implementing `run.impl`."""
    module = import_module(one_of(MODULES, run.impl, f"models.{run.name}.impl"))
    return module.BACKEND


def make_backend(
    run: RunParams, network: NetworkParams, weights: dict[str, np.ndarray], images: np.ndarray,
    labels: np.ndarray, threads: int,
) -> Backend:
    """The implementation named by `run.impl`, started from `weights`, holding (images (n, 784), labels (n,))."""
    return backend_class(run)(run, weights, images, labels, np.dtype(network.dtype), threads, network.activation)
