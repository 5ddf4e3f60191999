"""The fused softmax cross-entropy: agreement with PyTorch, stability at extreme logits, the layer functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistbench.scratch.activations import relu_backward, relu_forward
from mnistbench.scratch.layers import dense_backward, dense_forward
from mnistbench.scratch.losses import cross_entropy, log_softmax, softmax_cross_entropy


def torch_loss_and_gradient(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    tensor = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(tensor, torch.tensor(labels))
    loss.backward()
    return loss.item(), tensor.grad.numpy()


@pytest.mark.parametrize("order", ["C", "F"])
def test_softmax_cross_entropy_equals_torch_cross_entropy(order: str) -> None:
    rng = np.random.default_rng(0)
    logits, labels = np.asarray(rng.normal(0, 3, (64, 10)), order=order), rng.integers(0, 10, 64)
    loss, dlogits = softmax_cross_entropy(logits.copy(order=order), labels)
    expected_loss, expected_gradient = torch_loss_and_gradient(logits, labels)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dlogits, expected_gradient, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_cross_entropy_is_finite_and_exact_for_huge_logits(scale: float) -> None:
    rng = np.random.default_rng(1)
    logits, labels = scale * rng.choice([-1.0, 0.0, 1.0], size=(32, 10)), rng.integers(0, 10, 32)
    loss, dlogits = softmax_cross_entropy(logits.copy(), labels)
    expected_loss, expected_gradient = torch_loss_and_gradient(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dlogits, expected_gradient, rtol=1e-10, atol=1e-15)


def test_huge_logits_in_float32_stay_finite() -> None:
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=np.float32)
    loss, dlogits = softmax_cross_entropy(logits.copy(), np.array([1, 2]))
    assert loss == pytest.approx(2e4 / 2)  # first row misses by 2e4, the second is right
    assert np.all(np.isfinite(dlogits))
    assert np.isfinite(cross_entropy(logits, np.array([1, 2])))


def test_cross_entropy_agrees_with_the_fused_loss_and_with_torch() -> None:
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(0, 5, (100, 10)).astype(np.float32), rng.integers(0, 10, 100)
    expected, _ = torch_loss_and_gradient(logits.astype(np.float64), labels)
    assert cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert softmax_cross_entropy(logits.astype(np.float64), labels)[0] == pytest.approx(expected, rel=1e-12)


def test_inplace_loss_overwrites_the_logits_with_the_gradient() -> None:
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(16, 10)), rng.integers(0, 10, 16)
    _, expected = softmax_cross_entropy(logits.copy(), labels)
    buffer = logits.copy()
    _, dlogits = softmax_cross_entropy(buffer, labels, inplace=True)
    assert dlogits is buffer
    np.testing.assert_array_equal(dlogits, expected)


def test_log_softmax_rows_are_log_probabilities() -> None:
    log_probs = log_softmax(np.random.default_rng(4).normal(0, 100, (8, 10)))
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-12)


def test_dense_and_relu_functions_match_torch_autograd() -> None:
    rng = np.random.default_rng(5)
    x, w, b, dout = rng.normal(size=(6, 5)), rng.normal(size=(5, 4)), rng.normal(size=4), rng.normal(size=(6, 4))
    pre, dense_cache = dense_forward(x, w, b)
    out, relu_cache = relu_forward(pre)
    dx, dw, db = dense_backward(relu_backward(dout, relu_cache), dense_cache)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    torch_out = torch.relu(tensors[0] @ tensors[1] + tensors[2])
    torch_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, torch_out.detach().numpy(), rtol=1e-12)
    for mine, theirs in zip((dx, dw, db), tensors, strict=True):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_dense_backward_skips_the_input_gradient_when_not_needed() -> None:
    rng = np.random.default_rng(6)
    _, cache = dense_forward(rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), np.zeros(2))
    dx, dw, db = dense_backward(rng.normal(size=(3, 2)), cache, need_dx=False)
    assert dx is None and dw.shape == (4, 2) and db.shape == (2,)
