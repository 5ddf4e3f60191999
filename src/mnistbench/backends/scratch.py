"""The scratch backend: the hand-written NumPy MLP and optimizers of `mnistbench.scratch` behind the Backend protocol.

It holds the training rows converted once to the model's dtype, gathers each mini-batch into a reused
buffer, and runs one forward/backward pass and one optimizer step per batch, at the learning rate its schedule
gives that step. The optimizer sees the whole parameter vector as one array and steps it with its fused kernel
(scratch/kernels.c, loaded by scratch/fused.py): one compiled loop over all parameters, the bits of the NumPy
reference, which it falls back to where the kernels are not built; the network's loss and its bias and ReLU passes
run on the same kernels (scratch/network.py), with the same bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mnistbench.backends.fpenv import DENORMALS, denormals_flushed
from mnistbench.errors import one_of
from mnistbench.params import RunParams
from mnistbench.scratch.fused import instruction_set, kernels
from mnistbench.scratch.network import MLP
from mnistbench.scratch.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from mnistbench.scratch.schedules import learning_rates, steps_per_epoch

OPTIMIZERS = {
    "sgd": lambda run, params, fused: SGD(
        params, lr=run.lr, momentum=run.momentum, nesterov=run.nesterov, weight_decay=run.weight_decay, fused=fused),
    "adam": lambda run, params, fused: Adam(
        params, lr=run.lr, beta1=run.beta1, beta2=run.beta2, eps=run.eps, weight_decay=run.weight_decay, fused=fused),
    "adamw": lambda run, params, fused: AdamW(
        params, lr=run.lr, beta1=run.beta1, beta2=run.beta2, eps=run.eps, weight_decay=run.weight_decay, fused=fused),
    "rmsprop": lambda run, params, fused: RMSprop(
        params, lr=run.lr, alpha=run.alpha, eps=run.eps, momentum=run.momentum, centered=run.centered,
        weight_decay=run.weight_decay, fused=fused),
    "adagrad": lambda run, params, fused: Adagrad(
        params, lr=run.lr, eps=run.eps, weight_decay=run.weight_decay,
        initial_accumulator_value=run.initial_accumulator_value, fused=fused),
}


def make_optimizer(run: RunParams, params: dict[str, np.ndarray]) -> Optimizer:
    """The optimizer named by run.optimizer over params, with the keys of params.OPTIMIZER_KEYS it reads; on its
    fused path wherever the compiled kernels are built (the same bits either way, so the choice never changes a
    result: tests/test_scratch_fused.py)."""
    fused = kernels() is not None
    return one_of(OPTIMIZERS, run.optimizer, f"models.{run.name}.optimizer")(run, params, fused)


class ScratchBackend:
    """Hand-written NumPy MLP and optimizer, trained on (images, labels) given once.

    weights: the shared layout {"w1": (784, h1), "b1": (h1,), ..., "wL": (h_{L-1}, 10), "bL": (10,)};
    images: (n, 784) float (converted once to `dtype`); labels: (n,) int64; activation: relu | tanh | sigmoid.
    The learning rate of every step comes from `learning_rates` (mnistbench.scratch.schedules), for the run's
    epochs of ceil(n / batch_size) steps.
    """

    device_name = "cpu"

    def __init__(
        self, run: RunParams, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
        dtype: np.dtype, threads: int = 1, activation: str = "relu",
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.network = MLP(weights, self.dtype, activation, kernels())
        epoch_steps = steps_per_epoch(len(labels), run.batch_size)
        self.optimizer = make_optimizer(run, {"all": self.network.flat_params})
        self.schedule = learning_rates(run.schedule, run.lr, epoch_steps, run.epochs)
        self._rates = self.schedule.tolist()  # Python floats, read one a step
        self.steps_taken = 0
        self.images = np.ascontiguousarray(images, dtype=self.dtype)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._batch_images: dict[int, np.ndarray] = {}

    @staticmethod
    def configure_process(threads: int) -> None:
        """Nothing process-wide: the stages limit NumPy's BLAS threads around their own work (threadpoolctl)."""

    def train_epoch(self, batches: list[np.ndarray]) -> np.ndarray:
        """One optimizer step per batch (int64 row indices), in order.

        Returns the float64 loss of each batch, shape (len(batches),), or fewer: it stops after the first
        batch whose loss is not finite.
        """
        self._check_rows(batches)
        losses = np.empty(len(batches), dtype=np.float64)
        all_grads = {"all": self.network.flat_grads}
        with denormals_flushed():  # the same bytes, without Intel's slow path for subnormals (backends/fpenv.py)
            for step, rows in enumerate(batches):
                images, labels = self._gather(rows)
                loss, _ = self.network.loss_and_gradients(images, labels)
                losses[step] = loss
                if not math.isfinite(loss):
                    return losses[: step + 1]
                self.optimizer.lr = self._learning_rate(self.steps_taken)
                self.optimizer.step(all_grads)
                self.steps_taken += 1
        return losses

    def _learning_rate(self, step: int) -> float:
        """The schedule's rate for `step`; past the run's last step (a benchmark running extra epochs) the last one.

        A Python float: a NumPy float64 scalar would promote a float32 update to float64 (NEP 50).
        """
        return self._rates[min(step, len(self._rates) - 1)]

    def learning_rates(self) -> np.ndarray:
        """float64 (steps taken,): the learning rate of every optimizer step so far, in order."""
        return self.schedule[np.minimum(np.arange(self.steps_taken), len(self.schedule) - 1)]

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """images: (n, 784) float -> logits (n, 10) in the model's dtype."""
        return self.network.logits(np.asarray(images, dtype=self.dtype))

    def weights(self) -> dict[str, np.ndarray]:
        """Copies of the current parameters: w1 (784, h1), b1 (h1,), ..., wL (h_{L-1}, 10), bL (10,)."""
        return self.network.weights()

    def describe(self) -> dict[str, Any]:
        """What runs the model, for the training record: implementation, device, NumPy version, dtype, optimizer."""
        return {
            "impl": "scratch",
            "device": self.device_name,
            "device_type": "cpu",
            "numpy": np.__version__,
            "dtype": self.dtype.name,
            "optimizer": type(self.optimizer).__name__,
            # the fused kernels' instruction set (scratch/kernels.c), or None: the NumPy reference (the same bits)
            "fused_optimizer": instruction_set() if self.optimizer.kernels else None,
            "deterministic": True,  # single-process NumPy: same inputs, same BLAS threads -> same bytes
            "denormals": DENORMALS,
        }

    def _check_rows(self, batches: list[np.ndarray]) -> None:
        """Every row index of the epoch must exist (one check per epoch, not per step)."""
        if batches:
            rows = np.concatenate(batches)
            if rows.size and (rows.min() < 0 or rows.max() >= len(self.labels)):
                raise IndexError(f"batch row indices span [{rows.min()}, {rows.max()}]: the backend holds "
                                 f"{len(self.labels)} rows")

    def _gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch's (images (b, 784), labels (b,)).

        A batch holding every row (full-batch training) uses the stored arrays as they are: the rows of a
        full batch are a set, and the mean loss and its gradient do not depend on their order (up to
        floating-point rounding), so the 55,000-row copy per step is skipped.
        """
        if len(rows) == len(self.labels):
            return self.images, self.labels
        if len(rows) not in self._batch_images:
            self._batch_images[len(rows)] = np.empty((len(rows), self.images.shape[1]), self.dtype)
        # mode="clip" writes straight into the buffer (mode="raise" gathers into a temporary first, then
        # copies); the rows were checked once for the epoch by _check_rows.
        batch_images = np.take(self.images, rows, axis=0, out=self._batch_images[len(rows)], mode="clip")
        return batch_images, self.labels[rows]


BACKEND = ScratchBackend
