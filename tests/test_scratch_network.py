"""The scratch MLP: gradients against finite differences and PyTorch, the cs231n sanity checks, initialization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnistbench.scratch.initializers import xavier_uniform_mlp
from mnistbench.scratch.network import MLP, PARAM_NAMES
from mnistbench.scratch.optim import Adam

N_IN, HIDDEN, N_CLASSES = 784, 16, 10


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """cs231n's relative error, elementwise max."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def small_problem(seed: int = 0, batch: int = 8) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Float64 weights with non-zero biases, inputs and labels for a small batch."""
    rng = np.random.default_rng(seed)
    weights = xavier_uniform_mlp(rng, N_IN, HIDDEN, N_CLASSES, np.dtype(np.float64))
    weights["b1"] = rng.normal(0.0, 0.1, HIDDEN)
    weights["b2"] = rng.normal(0.0, 0.1, N_CLASSES)
    return weights, rng.random((batch, N_IN)), rng.integers(0, N_CLASSES, batch)


def numeric_gradient(network: MLP, images: np.ndarray, labels: np.ndarray, name: str, index: tuple,
                     step: float = 1e-6) -> float:
    param = network.params[name]
    original = param[index]
    param[index] = original + step
    loss_plus = network.loss_and_gradients(images, labels)[0]
    param[index] = original - step
    loss_minus = network.loss_and_gradients(images, labels)[0]
    param[index] = original
    return (loss_plus - loss_minus) / (2 * step)


def sampled_indices(shape: tuple[int, ...], rng: np.random.Generator, limit: int = 60) -> list[tuple[int, ...]]:
    """Every index of a small parameter; `limit` random ones of a large one."""
    if int(np.prod(shape)) <= limit:
        return list(np.ndindex(shape))
    return [tuple(int(rng.integers(0, size)) for size in shape) for _ in range(limit)]


def far_from_relu_kinks(network: MLP, images: np.ndarray, margin: float = 1e-5) -> bool:
    """No pre-activation within `margin` of 0: a +-1e-6 step of one weight or bias (inputs in [0, 1)) moves
    a pre-activation by at most 1e-6, so no finite difference crosses a ReLU kink."""
    pre_activation = images @ network.params["w1"] + network.params["b1"]
    return bool(np.min(np.abs(pre_activation)) > margin)


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_gradient_of_every_parameter_matches_centred_finite_differences(name: str) -> None:
    weights, images, labels = small_problem()
    network = MLP(weights, np.float64)
    assert far_from_relu_kinks(network, images)
    analytic = network.loss_and_gradients(images, labels)[1][name].copy()
    indices = sampled_indices(analytic.shape, np.random.default_rng(1))
    numeric = np.array([numeric_gradient(network, images, labels, name, index) for index in indices])
    picked = np.array([analytic[index] for index in indices])
    assert np.any(picked != 0)
    assert rel_error(picked, numeric) < 1e-6


def test_gradients_equal_pytorch_autograd_in_float64() -> None:
    weights, images, labels = small_problem(seed=3, batch=32)
    loss, grads = MLP(weights, np.float64).loss_and_gradients(images, labels)
    tensors = {name: torch.tensor(weights[name], requires_grad=True) for name in PARAM_NAMES}
    hidden = torch.relu(torch.tensor(images) @ tensors["w1"] + tensors["b1"])
    torch_loss = torch.nn.functional.cross_entropy(hidden @ tensors["w2"] + tensors["b2"], torch.tensor(labels))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=1e-10, atol=1e-14)


def test_loss_at_xavier_init_is_about_ln_10() -> None:
    rng = np.random.default_rng(0)
    weights = xavier_uniform_mlp(rng, N_IN, 128, N_CLASSES, np.dtype(np.float32))
    images = rng.random((500, N_IN), dtype=np.float32) * 0.1
    loss, _ = MLP(weights, np.float32).loss_and_gradients(images, rng.integers(0, N_CLASSES, 500))
    assert abs(loss - math.log(10)) < 0.1


def test_network_overfits_20_examples_to_near_zero_loss() -> None:
    rng = np.random.default_rng(0)
    network = MLP(xavier_uniform_mlp(rng, N_IN, 64, N_CLASSES, np.dtype(np.float64)), np.float64)
    images, labels = rng.random((20, N_IN)), rng.integers(0, N_CLASSES, 20)
    optimizer = Adam(network.params, lr=1e-2)
    for _ in range(200):
        loss, grads = network.loss_and_gradients(images, labels)
        optimizer.step(grads)
    assert loss < 1e-3
    assert np.array_equal(np.argmax(network.logits(images), axis=1), labels)


def test_float32_network_computes_in_float32() -> None:
    weights, images, labels = small_problem()
    network = MLP(weights, np.float32)
    _, grads = network.loss_and_gradients(images.astype(np.float32), labels)
    assert all(grads[name].dtype == np.float32 for name in PARAM_NAMES)
    assert network.logits(images.astype(np.float32)).dtype == np.float32


def test_logits_equal_the_forward_pass_used_in_training() -> None:
    weights, images, _ = small_problem(batch=5)
    network = MLP(weights, np.float64)
    expected = np.maximum(images @ weights["w1"] + weights["b1"], 0) @ weights["w2"] + weights["b2"]
    np.testing.assert_allclose(network.logits(images), expected, rtol=1e-12)


def test_xavier_uniform_mlp_shapes_bounds_and_zero_biases() -> None:
    weights = xavier_uniform_mlp(np.random.default_rng(0), N_IN, 128, N_CLASSES, np.dtype(np.float32))
    assert {name: w.shape for name, w in weights.items()} == {
        "w1": (N_IN, 128), "b1": (128,), "w2": (128, N_CLASSES), "b2": (N_CLASSES,)}
    assert all(w.dtype == np.float32 for w in weights.values())
    for name, (fan_in, fan_out) in {"w1": (N_IN, 128), "w2": (128, N_CLASSES)}.items():
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.max(np.abs(weights[name])) <= bound
        assert np.max(np.abs(weights[name])) > 0.95 * bound  # fills the interval, not a narrower one
        assert abs(np.std(weights[name]) - bound / math.sqrt(3)) < 0.05 * bound
    assert not np.any(weights["b1"]) and not np.any(weights["b2"])


def test_xavier_uniform_mlp_is_fixed_by_the_generator_state() -> None:
    first = xavier_uniform_mlp(np.random.default_rng(7), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    again = xavier_uniform_mlp(np.random.default_rng(7), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    other = xavier_uniform_mlp(np.random.default_rng(8), N_IN, 32, N_CLASSES, np.dtype(np.float64))
    assert all(np.array_equal(first[name], again[name]) for name in PARAM_NAMES)
    assert not np.array_equal(first["w1"], other["w1"])
