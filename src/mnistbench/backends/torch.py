"""The same MLP, optimizers and schedules in PyTorch: the reference the scratch network is measured against.

`TorchBackend` follows the `Backend` protocol of `mnistbench.backends`: it starts from the
shared NumPy initial weights, runs the batches it is handed in order, and gives its weights back in the shared
layout (w1 (784, h1), b1 (h1,), ..., wL (h_{L-1}, 10), bL (10,)); `nn.Linear` stores (out, in), hence the
transposes. The learning rate follows `torch.optim.lr_scheduler`, stepped once per optimizer step.

The training rows move to the device once, at construction; each epoch sends its batch order as one index
tensor and gathers rows on the device, and the per-batch losses stay on the device until the epoch ends.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from mnistbench.backends.fpenv import DENORMALS, denormals_flushed
from mnistbench.errors import MnistbenchError, one_of
from mnistbench.params import RunParams
from mnistbench.scratch.network import count_layers
from mnistbench.scratch.schedules import steps_per_epoch

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# cuBLAS is deterministic (torch.use_deterministic_algorithms) only with this set before CUDA initializes.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


DEVICES = {
    "auto": lambda: "cuda" if torch.cuda.is_available() else "cpu",
    "cpu": lambda: "cpu",
    "cuda": lambda: "cuda",
}


def resolve_device(requested: str, model_name: str = "model") -> torch.device:
    """`device` of params.yaml -> a torch device: auto = cuda when present, else cpu; cuda without CUDA fails."""
    key = f"models.{model_name}.device"
    device = one_of(DEVICES, requested, key)()
    if device == "cuda" and not torch.cuda.is_available():
        raise MnistbenchError(
            f"{key} = 'cuda': no CUDA device is available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use device: auto or cpu"
        )
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """'cpu', or the GPU model (e.g. 'NVIDIA H100 80GB HBM3')."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a timer around it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    return one_of(TORCH_DTYPES, np.dtype(dtype).name, "network.dtype")


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def build_mlp(
    weights: dict[str, np.ndarray], dtype: torch.dtype, device: torch.device, activation: str = "relu"
) -> nn.Sequential:
    """Linear -> activation -> ... -> Linear holding `weights` (shared layout w1 (784, h1), b1 (h1,), ..., bL (10,))."""
    modules: list[nn.Module] = []
    for layer in range(1, count_layers(weights) + 1):
        w, b = weights[f"w{layer}"], weights[f"b{layer}"]
        linear = nn.Linear(*w.shape, dtype=dtype, device=device)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        modules += [linear, one_of(ACTIVATIONS, activation, "network.activation")()]
    return nn.Sequential(*modules[:-1])


def linear_layers(network: nn.Sequential) -> list[nn.Linear]:
    """The dense layers of a network built by build_mlp, in order."""
    return [module for module in network if isinstance(module, nn.Linear)]


def build_optimizer(run: RunParams, parameters: Any) -> torch.optim.Optimizer:
    """The torch.optim counterpart of `run.optimizer` with the hyperparameters of one `models` entry.

    `fused=True` picks torch's fastest implementation (one kernel for all parameters, on CPU and CUDA) where torch
    has one (SGD, Adam, AdamW, Adagrad), `foreach=True` otherwise (RMSprop): the baseline the scratch optimizers
    are measured against should be PyTorch at its best, not its default.
    """
    return one_of(OPTIMIZERS, run.optimizer, f"models.{run.name}.optimizer")(run, parameters)


OPTIMIZERS = {
    "sgd": lambda run, parameters: torch.optim.SGD(
        parameters, lr=run.lr, momentum=run.momentum, dampening=0, nesterov=run.nesterov,
        weight_decay=run.weight_decay, fused=True,
    ),
    "adam": lambda run, parameters: torch.optim.Adam(
        parameters, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps, weight_decay=run.weight_decay, fused=True
    ),
    "adamw": lambda run, parameters: torch.optim.AdamW(
        parameters, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps, weight_decay=run.weight_decay, fused=True
    ),
    "rmsprop": lambda run, parameters: torch.optim.RMSprop(
        parameters, lr=run.lr, alpha=run.alpha, eps=run.eps, weight_decay=run.weight_decay, momentum=run.momentum,
        centered=run.centered, foreach=True,
    ),
    "adagrad": lambda run, parameters: torch.optim.Adagrad(
        parameters, lr=run.lr, lr_decay=0, weight_decay=run.weight_decay,
        initial_accumulator_value=run.initial_accumulator_value, eps=run.eps, fused=True,
    ),
}


def build_scheduler(
    run: RunParams, optimizer: torch.optim.Optimizer, epoch_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The lr_scheduler of `run.schedule`, to be stepped once per optimizer step; None for a constant rate.

    epoch_steps: optimizer steps per epoch. The formulas (mnistbench.scratch.schedules, docs/optimizers.md):
    step = StepLR(step_size=K * epoch_steps);
    cosine = LinearLR(start_factor=1 / (S + 1), total_iters=S) for the S = W * epoch_steps warmup steps, then
    CosineAnnealingLR(T_max=max(N - 1 - S, 1), eta_min=M), joined by SequentialLR at step S.
    """
    schedule, lr_scheduler = run.schedule, torch.optim.lr_scheduler
    if schedule["name"] == "constant":
        return None
    if schedule["name"] == "step":
        return lr_scheduler.StepLR(optimizer, step_size=schedule["step_epochs"] * epoch_steps,
                                   gamma=schedule["gamma"])
    warmup = schedule["warmup_epochs"] * epoch_steps
    cosine = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epoch_steps * run.epochs - 1 - warmup, 1), eta_min=schedule["min_lr"]
    )
    if warmup == 0:
        return cosine
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def apply_deterministic_settings(threads: int) -> None:
    """Pin torch's CPU threads and ask for deterministic kernels: process-wide, so only the CLI calls this
    (through `TorchBackend.configure_process`), and tests that need it restore what they change."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.set_num_threads(threads)
    set_deterministic_algorithms()
    torch.backends.cudnn.benchmark = False


def set_deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True), without its import of torch._inductor (over a second per job).

    The public call sets one more flag, `torch._inductor.config.deterministic`, which only torch.compile reads, and
    this package never compiles. The private call is the public one's own last line; tests/test_backend_torch.py
    fails if it stops setting what torch.are_deterministic_algorithms_enabled() reports.
    """
    torch._C._set_deterministic_algorithms(True, warn_only=False)


def losses_until_nonfinite(losses: np.ndarray) -> np.ndarray:
    """float64 (n,) -> the losses up to and including the first non-finite one (all of them if none is)."""
    nonfinite = np.flatnonzero(~np.isfinite(losses))
    return losses if nonfinite.size == 0 else losses[: nonfinite[0] + 1]


class TorchBackend:
    """The MLP in `torch.nn` with `torch.optim`, trained on rows held on its device.

    run: one `models` entry (impl torch). weights: the shared initial weights. images: (n, 784) float32;
    labels: (n,) int64; dtype: float32 or float64 (parameters and data); threads: torch CPU threads;
    activation: relu | tanh | sigmoid.
    """

    def __init__(
        self, run: RunParams, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
        dtype: np.dtype, threads: int = 1, activation: str = "relu",
    ) -> None:
        self.dtype = torch_dtype(dtype)
        self.device = resolve_device(run.device, run.name)
        self.device_name = device_name(self.device)
        self.network = build_mlp(weights, self.dtype, self.device, activation)
        # Building a torch.optim optimizer imports torch._dynamo (over a second): an evaluate job, which holds no
        # training rows, never builds one.
        self.optimizer = build_optimizer(run, self.network.parameters()) if len(labels) else None
        self.scheduler = self.optimizer and build_scheduler(run, self.optimizer,
                                                            steps_per_epoch(len(labels), run.batch_size))
        self.step_learning_rates: list[float] = []
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_images = self.to_device(images)
        self.train_labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)

    configure_process = staticmethod(apply_deterministic_settings)

    def to_device(self, images: np.ndarray) -> torch.Tensor:
        """(n, 784) array -> a tensor of the backend's dtype on its device."""
        host = torch.from_numpy(np.ascontiguousarray(images))
        return host.to(device=self.device, dtype=self.dtype)

    def train_epoch(self, batches: list[np.ndarray]) -> np.ndarray:
        """One optimizer step per batch (int64 row indices), in order -> float64 (len(batches),) losses.

        The losses are copied to the host once, at the end of the epoch; the returned array stops at the first
        non-finite loss (the remaining steps of that epoch have still run, on non-finite weights).
        """
        if not batches:
            return np.empty(0, dtype=np.float64)
        self.network.train()
        order = torch.from_numpy(np.concatenate(batches).astype(np.int64, copy=False)).to(self.device)
        losses = torch.empty(len(batches), dtype=torch.float64, device=self.device)
        with denormals_flushed():  # as the scratch backend trains (backends/fpenv.py)
            for step, rows in enumerate(torch.split(order, [len(batch) for batch in batches])):
                losses[step] = self.step(rows).detach()
        host_losses = losses.cpu().numpy()
        synchronize(self.device)
        return losses_until_nonfinite(host_losses)

    def step(self, rows: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the held rows `rows` (int64 tensor on the device) -> the batch loss (scalar)."""
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.network(self.train_images.index_select(0, rows))
        loss = self.loss_fn(logits, self.train_labels.index_select(0, rows))
        loss.backward()
        self.step_learning_rates.append(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    def learning_rates(self) -> np.ndarray:
        """float64 (steps taken,): the learning rate of every optimizer step so far, read from param_groups."""
        return np.array(self.step_learning_rates, dtype=np.float64)

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """images: (n, 784) float32 on the host -> logits (n, 10) in the backend's dtype, on the host."""
        self.network.eval()
        with torch.no_grad():
            logits = self.network(self.to_device(images))
        return logits.cpu().numpy()

    def weights(self) -> dict[str, np.ndarray]:
        """The current parameters as NumPy, shared layout: w1 (784, h1), b1 (h1,), ..., bL (10,)."""

        def host(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy())

        weights = {}
        for layer, linear in enumerate(linear_layers(self.network), start=1):
            weights[f"w{layer}"], weights[f"b{layer}"] = host(linear.weight.T), host(linear.bias)
        return weights

    def describe(self) -> dict[str, Any]:
        """The settings this backend ran under, for the training record."""
        return {
            "impl": "torch",
            "device": self.device_name,
            "device_type": self.device.type,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "denormals": DENORMALS if self.device.type == "cpu" else "as the device computes",
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "optimizer": type(self.optimizer).__name__ if self.optimizer else None,  # None: evaluation only
            "fused_optimizer": bool(self.optimizer and self.optimizer.defaults.get("fused")),
            "foreach_optimizer": bool(self.optimizer and self.optimizer.defaults.get("foreach")),
            "scheduler": type(self.scheduler).__name__ if self.scheduler is not None else None,
        }


BACKEND = TorchBackend
