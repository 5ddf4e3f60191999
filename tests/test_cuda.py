"""The torch backend on a CUDA device: same numbers as on the CPU, data on the device, the GPU recorded.

Skipped, with the reason shown by `pytest -ra`, where torch sees no CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import synthetic_digits

from mnistbench.backends.torch import TorchBackend
from mnistbench.params import NetworkParams, RunParams
from mnistbench.training import epoch_batches, generators, initial_weights, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.usefixtures("deterministic_torch"),
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no GPU",
    ),
]


def run_params(device: str, optimizer: str = "adam", **overrides) -> RunParams:
    values = dict(name="torch_gpu", impl="torch", optimizer=optimizer, lr=0.01, momentum=0.0, beta1=0.9,
                  beta2=0.999, eps=1e-8, weight_decay=0.0, nesterov=False, epochs=2, batch_size=64, device=device)
    values.update(overrides)
    return RunParams(**values)


def trained(device: str, dtype: type, steps: int, optimizer: str = "adam",
            **overrides) -> tuple[TorchBackend, np.ndarray]:
    images, labels = synthetic_digits(640, seed=0, noise=0.9)
    model = NetworkParams(hidden=64, init="xavier_uniform", dtype=np.dtype(dtype).name)
    backend = TorchBackend(run_params(device, optimizer, **overrides), initial_weights(0, model), images, labels,
                           dtype, 1)
    _, batch_rng = generators(0)
    losses = []
    while len(losses) < steps:
        losses.extend(backend.train_epoch(epoch_batches(len(labels), 64, batch_rng)[: steps - len(losses)]))
    return backend, np.array(losses)


COSINE = {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5}
# Every optimizer on the device's fused (SGD, Adam, AdamW, Adagrad) or foreach (RMSprop) path, with a schedule.
CUDA_CASES = {
    "adam": ("adam", {}),
    "sgd": ("sgd", {}),
    "sgd-nesterov-step": ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
                                  "schedule": {"name": "step", "step_epochs": 1, "gamma": 0.5}}),
    "adamw-cosine": ("adamw", {"weight_decay": 0.05, "schedule": COSINE}),
    "rmsprop-cosine": ("rmsprop", {"lr": 1e-3, "alpha": 0.9, "momentum": 0.5, "centered": True, "schedule": COSINE}),
    "adagrad-cosine": ("adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-10, "schedule": COSINE}),
}


@pytest.mark.parametrize(("optimizer", "overrides"), CUDA_CASES.values(), ids=CUDA_CASES.keys())
def test_cuda_training_matches_cpu_in_float64(optimizer, overrides):
    gpu, gpu_losses = trained("cuda", np.float64, 100, optimizer, **overrides)
    cpu, cpu_losses = trained("cpu", np.float64, 100, optimizer, **overrides)
    np.testing.assert_array_equal(gpu.learning_rates(), cpu.learning_rates())
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=0, atol=1e-8)
    for name, value in cpu.weights().items():
        np.testing.assert_allclose(gpu.weights()[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_cuda_training_matches_cpu_in_float32_within_float32_tolerance():
    gpu, gpu_losses = trained("cuda", np.float32, 50)
    cpu, cpu_losses = trained("cpu", np.float32, 50)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-3, atol=1e-4)
    images, _ = synthetic_digits(500, seed=9)
    agree = np.mean(np.argmax(gpu.predict_logits(images), 1) == np.argmax(cpu.predict_logits(images), 1))
    assert agree >= 0.99


def test_cuda_training_is_deterministic():
    first, _ = trained("cuda", np.float32, 30)
    second, _ = trained("cuda", np.float32, 30)
    for name, value in first.weights().items():
        assert value.tobytes() == second.weights()[name].tobytes(), name


def test_training_data_and_parameters_live_on_the_gpu():
    backend, _ = trained("auto", np.float32, 1)
    assert backend.device.type == "cuda"
    assert backend.train_images.is_cuda and backend.train_labels.is_cuda
    assert all(parameter.is_cuda for parameter in backend.network.parameters())


def test_device_name_is_the_gpu_model_in_backend_and_training_record():
    name = torch.cuda.get_device_name(0)
    images, labels = synthetic_digits(256, seed=1)
    empty = {"images": images[:0], "labels": labels[:0]}
    model = NetworkParams(hidden=32, init="xavier_uniform", dtype="float32")
    _, record = train(run_params("cuda", epochs=1), model, 0, {"images": images, "labels": labels}, empty,
                      progress=False)
    assert record["device"] == name != "cpu"
    backend, _ = trained("cuda", np.float32, 1)
    assert backend.describe()["device"] == name and backend.describe()["device_type"] == "cuda"
    assert backend.describe()["cuda"] == torch.version.cuda
