"""The same 784-hidden-10 MLP and optimizers in PyTorch: the reference the scratch network is measured against.

`TorchBackend` follows the `Backend` protocol of `mnistbench.backends`: it starts from the
shared NumPy initial weights, runs the batches it is handed in order, and gives its weights back in the shared
layout (w1 (784, h), b1 (h,), w2 (h, 10), b2 (10,)); `nn.Linear` stores (out, in), hence the transposes.

The training rows move to the device once, at construction; each epoch sends its batch order as one index
tensor and gathers rows on the device, and the per-batch losses stay on the device until the epoch ends.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from mnistbench.errors import MnistbenchError, one_of
from mnistbench.params import RunParams

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


def build_mlp(weights: dict[str, np.ndarray], dtype: torch.dtype, device: torch.device) -> nn.Sequential:
    """Linear -> ReLU -> Linear holding `weights` (shared layout: w1 (784, h), b1 (h,), w2 (h, 10), b2 (10,))."""
    n_inputs, hidden = weights["w1"].shape
    n_classes = weights["w2"].shape[1]
    network = nn.Sequential(
        nn.Linear(n_inputs, hidden, dtype=dtype, device=device),
        nn.ReLU(),
        nn.Linear(hidden, n_classes, dtype=dtype, device=device),
    )
    with torch.no_grad():
        for layer, (w, b) in zip((network[0], network[2]), (("w1", "b1"), ("w2", "b2")), strict=True):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[w].T)))
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[b])))
    return network


def build_optimizer(run: RunParams, parameters: Any) -> torch.optim.Optimizer:
    """torch.optim.Adam or torch.optim.SGD with the hyperparameters of one `models` entry.

    `fused=True` picks torch's fastest implementation (one kernel for all parameters, on CPU and CUDA): the
    baseline the scratch optimizers are measured against should be PyTorch at its best, not its default.
    """
    return one_of(OPTIMIZERS, run.optimizer, f"models.{run.name}.optimizer")(run, parameters)


OPTIMIZERS = {
    "adam": lambda run, parameters: torch.optim.Adam(
        parameters, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps, fused=True
    ),
    "sgd": lambda run, parameters: torch.optim.SGD(parameters, lr=run.lr, momentum=run.momentum, fused=True),
}


def apply_deterministic_settings(threads: int) -> None:
    """Pin torch's CPU threads and ask for deterministic kernels: process-wide, so only the CLI calls this
    (through `TorchBackend.configure_process`), and tests that need it restore what they change."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def losses_until_nonfinite(losses: np.ndarray) -> np.ndarray:
    """float64 (n,) -> the losses up to and including the first non-finite one (all of them if none is)."""
    nonfinite = np.flatnonzero(~np.isfinite(losses))
    return losses if nonfinite.size == 0 else losses[: nonfinite[0] + 1]


class TorchBackend:
    """The MLP in `torch.nn` with `torch.optim`, trained on rows held on its device.

    run: one `models` entry (impl torch). weights: the shared initial weights. images: (n, 784) float32;
    labels: (n,) int64; dtype: float32 or float64 (parameters and data); threads: torch CPU threads.
    """

    def __init__(
        self, run: RunParams, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
        dtype: np.dtype, threads: int = 1,
    ) -> None:
        self.dtype = torch_dtype(dtype)
        self.device = resolve_device(run.device, run.name)
        self.device_name = device_name(self.device)
        self.network = build_mlp(weights, self.dtype, self.device)
        self.optimizer = build_optimizer(run, self.network.parameters())
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
        self.optimizer.step()
        return loss

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """images: (n, 784) float32 on the host -> logits (n, 10) in the backend's dtype, on the host."""
        self.network.eval()
        with torch.no_grad():
            logits = self.network(self.to_device(images))
        return logits.cpu().numpy()

    def weights(self) -> dict[str, np.ndarray]:
        """Current parameters in the shared layout: w1 (784, h), b1 (h,), w2 (h, 10), b2 (10,), as NumPy."""
        first, second = self.network[0], self.network[2]

        def host(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy())

        return {"w1": host(first.weight.T), "b1": host(first.bias), "w2": host(second.weight.T),
                "b2": host(second.bias)}

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
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "optimizer": type(self.optimizer).__name__,
            "fused_optimizer": bool(self.optimizer.defaults.get("fused")),
        }


BACKEND = TorchBackend
