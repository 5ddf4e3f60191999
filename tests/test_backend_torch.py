"""The PyTorch backend: same start, same batches, same result as the scratch network; device and settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import synthetic_digits

from mnistbench.backends import make_backend
from mnistbench.backends.scratch import ScratchBackend
from mnistbench.backends.torch import TorchBackend, losses_until_nonfinite, resolve_device
from mnistbench.errors import MnistbenchError
from mnistbench.params import NetworkParams, RunParams
from mnistbench.training import epoch_batches, generators, initial_weights, train

FIXTURE = Path(__file__).parent / "fixtures" / "mnist_small.npz"


def run_params(impl: str, optimizer: str, **overrides) -> RunParams:
    values = dict(name=f"{impl}_{optimizer}", impl=impl, optimizer=optimizer, lr=0.01, momentum=0.0, beta1=0.9,
                  beta2=0.999, eps=1e-8, weight_decay=0.0, nesterov=False, epochs=1, batch_size=32, device="cpu")
    values.update(overrides)
    return RunParams(**values)


def model_params(dtype: str, hidden: int = 32) -> NetworkParams:
    return NetworkParams(hidden=hidden, init="xavier_uniform", dtype=dtype)




def train_for_steps(backend, n_rows: int, batch_size: int, steps: int, seed: int = 0) -> np.ndarray:
    """Feed `steps` batches drawn the shared way (training.epoch_batches); return every loss, float64."""
    _, batch_rng = generators(seed)
    losses = []
    while len(losses) < steps:
        batches = epoch_batches(n_rows, batch_size, batch_rng)[: steps - len(losses)]
        losses.extend(backend.train_epoch(batches))
    return np.array(losses)


def trained_pair(optimizer: str, steps: int = 100, **overrides) -> tuple[dict, dict, np.ndarray, np.ndarray, dict]:
    """Train torch and scratch in float64 from the same init on the same batches."""
    images, labels = synthetic_digits(320, seed=1)
    model = model_params("float64")
    start = initial_weights(0, model)
    torch_net = TorchBackend(run_params("torch", optimizer, **overrides), start, images, labels, np.float64, 1)
    scratch_net = ScratchBackend(run_params("scratch", optimizer, **overrides), start, images, labels, np.float64)
    torch_losses = train_for_steps(torch_net, len(labels), 32, steps)
    scratch_losses = train_for_steps(scratch_net, len(labels), 32, steps)
    return torch_net.weights(), scratch_net.weights(), torch_losses, scratch_losses, start


@pytest.mark.parametrize(
    ("optimizer", "overrides"),
    [("adam", {}), ("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.05, "momentum": 0.9})],
    ids=["adam", "sgd", "sgd-momentum"],
)
def test_torch_and_scratch_agree_to_1e6_after_100_steps_in_float64(optimizer, overrides):
    torch_weights, scratch_weights, torch_losses, scratch_losses, start = trained_pair(optimizer, **overrides)
    assert len(torch_losses) == len(scratch_losses) == 100
    np.testing.assert_allclose(torch_losses, scratch_losses, rtol=0, atol=1e-6)
    for name, value in torch_weights.items():
        assert value.shape == scratch_weights[name].shape == start[name].shape
        assert np.max(np.abs(value - start[name])) > 1e-3, f"{name} did not move: the comparison would be empty"
        np.testing.assert_allclose(value, scratch_weights[name], rtol=0, atol=1e-6, err_msg=name)


def small_real_sample() -> tuple[dict, dict, str] | None:
    """(train_set, test_set, "real") from the real-MNIST fixture (official train rows, then test rows), or None."""
    if not FIXTURE.is_file():
        return None
    with np.load(FIXTURE, allow_pickle=False) as archive:
        images, labels, split = archive["images"], archive["labels"], int(archive["train_rows"])
    images = images.astype(np.float32) / 255.0
    return ({"images": images[:split], "labels": labels[:split]},
            {"images": images[split:], "labels": labels[split:]}, "real")


def accuracy_sample() -> tuple[dict, dict, str]:
    real = small_real_sample()
    if real is not None:
        return real
    images, labels = synthetic_digits(3000, seed=2, noise=0.9)
    return ({"images": images[:2000], "labels": labels[:2000]},
            {"images": images[2000:], "labels": labels[2000:]}, "synthetic")


def test_float32_test_accuracies_of_torch_and_scratch_differ_by_at_most_0_2_points():
    train_set, test_set, _ = accuracy_sample()
    empty = {"images": train_set["images"][:0], "labels": train_set["labels"][:0]}
    model = model_params("float32", hidden=64)
    accuracies = {}
    for impl in ("torch", "scratch"):
        run = run_params(impl, "adam", lr=0.001, epochs=5, batch_size=32)
        weights, record = train(run, model, seed=0, train_set=train_set, val_set=empty, progress=False)
        assert record["status"] == "ok"
        backend = make_backend(run, model, weights, empty["images"], empty["labels"], 1)
        predicted = np.argmax(backend.predict_logits(test_set["images"]), axis=1)
        accuracies[impl] = 100.0 * np.mean(predicted == test_set["labels"])
    assert accuracies["torch"] > 50.0, f"training did not learn: {accuracies}"
    assert abs(accuracies["torch"] - accuracies["scratch"]) <= 0.2, accuracies


def test_scratch_forward_on_torch_trained_weights_predicts_what_torch_predicts():
    images, labels = synthetic_digits(1000, seed=3, noise=0.9)
    model = model_params("float32")
    torch_net = TorchBackend(run_params("torch", "adam"), initial_weights(0, model), images, labels, np.float32, 1)
    train_for_steps(torch_net, len(labels), 32, steps=60)
    scratch_net = ScratchBackend(run_params("scratch", "adam"), torch_net.weights(), images[:0], labels[:0],
                                 np.float32)
    torch_predicted = np.argmax(torch_net.predict_logits(images), axis=1)
    scratch_predicted = np.argmax(scratch_net.predict_logits(images), axis=1)
    assert len(np.unique(torch_predicted)) > 1
    np.testing.assert_array_equal(scratch_predicted, torch_predicted)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_come_back_in_the_shared_layout_unchanged(dtype):
    model = model_params(np.dtype(dtype).name, hidden=24)
    start = initial_weights(5, model)
    images, labels = synthetic_digits(8, seed=0)
    weights = TorchBackend(run_params("torch", "adam"), start, images, labels, dtype, 1).weights()
    assert set(weights) == {"w1", "b1", "w2", "b2"}
    for name, value in start.items():
        assert weights[name].dtype == np.dtype(dtype)
        assert weights[name].flags.c_contiguous
        np.testing.assert_array_equal(weights[name], value.astype(dtype), err_msg=name)
    assert weights["w1"].shape == (784, 24) and weights["w2"].shape == (24, 10)


def test_train_epoch_returns_one_float64_loss_per_batch_starting_at_the_initial_loss():
    images, labels = synthetic_digits(100, seed=4)
    model = model_params("float64")
    start = initial_weights(0, model)
    backend = TorchBackend(run_params("torch", "sgd"), start, images, labels, np.float64, 1)
    batches = [np.arange(0, 40), np.arange(40, 80), np.arange(80, 100)]
    losses = backend.train_epoch(batches)
    assert losses.dtype == np.float64 and losses.shape == (3,)
    hidden = np.maximum(images[:40].astype(np.float64) @ start["w1"] + start["b1"], 0.0)
    logits = hidden @ start["w2"] + start["b2"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected_first = -np.mean(log_probs[np.arange(40), labels[:40]])
    assert losses[0] == pytest.approx(expected_first, rel=1e-12)


def test_a_non_finite_loss_ends_the_returned_losses():
    images, labels = synthetic_digits(64, seed=5)
    model = model_params("float32")
    start = initial_weights(0, model)
    start["w2"][0, 0] = np.nan
    backend = TorchBackend(run_params("torch", "adam"), start, images, labels, np.float32, 1)
    losses = backend.train_epoch([np.arange(0, 32), np.arange(32, 64)])
    assert losses.shape == (1,) and not np.isfinite(losses[0])


def test_losses_until_nonfinite_keeps_everything_up_to_the_first_bad_loss():
    np.testing.assert_array_equal(losses_until_nonfinite(np.array([1.0, 2.0])), [1.0, 2.0])
    kept = losses_until_nonfinite(np.array([1.0, np.inf, np.nan, 3.0]))
    assert kept.shape == (2,) and kept[0] == 1.0 and np.isinf(kept[1])


def test_device_cuda_without_cuda_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MnistbenchError, match=r"models\.torch_adam\.device = 'cuda': no CUDA device") as caught:
        resolve_device("cuda", "torch_adam")
    assert "\n" not in str(caught.value)
    images, labels = synthetic_digits(8, seed=0)
    with pytest.raises(MnistbenchError, match="no CUDA device"):
        TorchBackend(run_params("torch", "adam", device="cuda"), initial_weights(0, model_params("float32")),
                     images, labels, np.float32, 1)


def test_device_auto_falls_back_to_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    images, labels = synthetic_digits(8, seed=0)
    backend = TorchBackend(run_params("torch", "adam", device="auto"), initial_weights(0, model_params("float32")),
                           images, labels, np.float32, 1)
    assert backend.device_name == "cpu"


def test_training_data_is_held_on_the_device_once():
    images, labels = synthetic_digits(16, seed=0)
    backend = TorchBackend(run_params("torch", "adam"), initial_weights(0, model_params("float32")), images,
                           labels, np.float32, 1)
    assert backend.train_images.device == backend.device and backend.train_labels.device == backend.device
    assert backend.train_images.dtype == torch.float32 and backend.train_labels.dtype == torch.int64
    assert tuple(backend.train_images.shape) == (16, 784)


def test_deterministic_settings_and_versions_are_applied_and_described(deterministic_torch):
    images, labels = synthetic_digits(8, seed=0)
    backend = TorchBackend(run_params("torch", "adam"), initial_weights(0, model_params("float32")), images,
                           labels, np.float32, threads=1)
    settings = backend.describe()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1
    assert settings["deterministic"] is True
    assert settings["cublas_workspace_config"] in (":4096:8", ":16:8")
    assert settings["threads"] == 1
    assert settings["torch"] == torch.__version__ and settings["cuda"] == torch.version.cuda
    assert settings["device"] == backend.device_name
    assert settings["optimizer"] == "Adam"
    assert settings["fused_optimizer"] is True


def test_two_runs_with_the_same_seed_give_identical_weights(deterministic_torch):
    images, labels = synthetic_digits(200, seed=6)
    model = model_params("float32")
    results = []
    for _ in range(2):
        backend = TorchBackend(run_params("torch", "adam"), initial_weights(3, model), images, labels, np.float32, 1)
        train_for_steps(backend, len(labels), 32, steps=14, seed=3)
        results.append(backend.weights())
    for name in results[0]:
        assert results[0][name].tobytes() == results[1][name].tobytes(), name
