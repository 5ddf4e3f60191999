"""Optimizers over named parameters (numpy-ml style): state is kept in dicts keyed by the parameter names.

Both follow PyTorch's update rules operation for operation, so that for the same parameters and gradients
they give the same update as torch.optim.SGD (dampening 0, no Nesterov) and torch.optim.Adam (no weight
decay, no AMSGrad). `step(grads)` updates the parameter arrays in place; no array is allocated per step.
"""

from __future__ import annotations

import math

import numpy as np


class SGD:
    """Stochastic gradient descent with optional heavy-ball momentum, as torch.optim.SGD.

    buf_t = momentum * buf_{t-1} + grad (buf_1 = grad); param -= lr * buf_t. momentum 0: param -= lr * grad.
    params: {name: float array}, updated in place by step().
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0) -> None:
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.steps = 0
        self.velocity = {name: np.zeros_like(p) for name, p in params.items()} if momentum else {}
        self.update_buffers = {name: np.empty_like(p) for name, p in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """One update. grads: {name: array shaped like params[name]}; read, not modified."""
        self.steps += 1
        for name, param in self.params.items():
            direction = grads[name]
            if self.momentum:
                direction = self._momentum_buffer(name, direction)
            update = np.multiply(direction, self.lr, out=self.update_buffers[name])
            param -= update

    def _momentum_buffer(self, name: str, grad: np.ndarray) -> np.ndarray:
        buf = self.velocity[name]
        if self.steps == 1:
            np.copyto(buf, grad)
        else:
            buf *= self.momentum
            buf += grad
        return buf


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, eps placed as torch.optim.Adam places it.

    m_t = beta1 m + (1 - beta1) g;  v_t = beta2 v + (1 - beta2) g^2;
    denom = sqrt(v_t) / sqrt(1 - beta2^t) + eps;  param -= lr / (1 - beta1^t) * m_t / denom.
    params: {name: float array}, updated in place by step().

    For speed the moments are stored scaled, M = m / (1 - beta1) and V = v / (1 - beta2), so that each
    moment update is two array passes (M = beta1 M + g; V = beta2 V + g^2), and the constant factors are
    folded into two scalars of the final update. The result is the formula above, algebraically exactly
    (equal to torch's update to rounding: see tests/test_scratch_optim.py).
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.steps = 0
        self.scaled_first_moment = {name: np.zeros_like(p) for name, p in params.items()}
        self.scaled_second_moment = {name: np.zeros_like(p) for name, p in params.items()}
        self.update_buffers = {name: np.empty_like(p) for name, p in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """One update. grads: {name: array shaped like params[name]}; read, not modified."""
        self.steps += 1
        # With c = sqrt(1 - beta2^t) / sqrt(1 - beta2), sqrt(v_t) / sqrt(1 - beta2^t) = sqrt(V) / c, so
        # lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
        #   = [lr / (1 - beta1^t) * (1 - beta1) * c] * M / (sqrt(V) + eps * c).
        c = math.sqrt(1.0 - self.beta2**self.steps) / math.sqrt(1.0 - self.beta2)
        denominator_shift = self.eps * c
        step_scale = self.lr / (1.0 - self.beta1**self.steps) * (1.0 - self.beta1) * c
        for name, param in self.params.items():
            grad, work = grads[name], self.update_buffers[name]
            first, second = self.scaled_first_moment[name], self.scaled_second_moment[name]
            first *= self.beta1
            first += grad
            second *= self.beta2
            np.multiply(grad, grad, out=work)
            second += work
            np.sqrt(second, out=work)
            work += denominator_shift
            np.divide(first, work, out=work)
            work *= step_scale
            param -= work
