"""Optimizers over named parameters (numpy-ml style): state is kept in dicts keyed by the parameter names.

Each follows its torch.optim counterpart's single-tensor reference (foreach=False) operation for operation, so
that for the same parameters and gradients both give the same update to rounding (docs/optimizers.md states
every rule; tests/test_optimizers_vs_torch.py holds them to torch). `step(grads)` updates the parameter arrays in
place, reading the learning rate from `self.lr` (the training loop sets it before each step from the schedule);
gradients are read, not modified. All state is arrays shaped like the parameters, every operation elementwise,
and no array is allocated per step.

Every optimizer has two paths, chosen at construction (`fused`): the readable NumPy reference (`fused=False`,
a few array passes per tensor, as below) and one compiled C loop per tensor (`fused=True`, scratch/kernels.c
through scratch/fused.py), which does per element the reference's operations in its order and gives the same bits
(tests/test_scratch_fused.py). The scratch backend steps the network's flat parameter vector on the fused path
wherever the kernels are built (backends/scratch.py `make_optimizer`).

Weight decay is L2 (added to the gradient: grad + weight_decay * param) everywhere but AdamW, whose decay is
decoupled (param *= 1 - lr * weight_decay before the Adam update).
"""

from __future__ import annotations

import math

import numpy as np

from mnistbench.scratch.fused import REBUILD, kernels


class Optimizer:
    """What every optimizer shares: the parameters, the learning rate, the step count, work buffers.

    params: {name: float array}, updated in place by step(); lr: the learning rate of the next step;
    fused: step with the one-loop compiled kernels (C-contiguous parameters only) instead of the NumPy reference;
    refused where they are not built (scratch/fused.py `kernels`).
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0,
                 fused: bool = False) -> None:
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.kernels = kernels() if fused else None
        if fused and self.kernels is None:
            raise RuntimeError(f"fused optimizer steps need the compiled kernels: {REBUILD}")
        if fused and not all(p.flags.c_contiguous for p in params.values()):
            raise ValueError("fused optimizer steps need C-contiguous parameter arrays")
        self.update_buffers = {} if fused else {name: np.empty_like(p) for name, p in params.items()}
        self.decay_buffers = {} if fused or not weight_decay else {name: np.empty_like(p) for name, p in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """One update. grads: {name: array shaped like params[name]}; read, not modified."""
        self.steps += 1
        if self.kernels is None:
            self._reference_step(grads)
            return
        for name, param in self.params.items():
            self._fused_step(name, param, np.ascontiguousarray(grads[name]))

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _fused_step(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """The kernel's update of one tensor; param, grad: C-contiguous, of one shape (the kernels read any shape as
        its elements in order, so no flat views are made)."""
        raise NotImplementedError

    def _state(self, fill: float = 0.0) -> dict[str, np.ndarray]:
        """One array per parameter, filled with `fill`."""
        return {name: np.full_like(p, fill) for name, p in self.params.items()}

    def _l2_gradient(self, name: str, grad: np.ndarray) -> np.ndarray:
        """grad + weight_decay * param (torch: grad.add(param, alpha=weight_decay)); grad itself when it is 0."""
        if not self.weight_decay:
            return grad
        decayed = np.multiply(self.params[name], self.weight_decay, out=self.decay_buffers[name])
        decayed += grad
        return decayed


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball or Nesterov momentum, as torch.optim.SGD (dampening 0).

    g = grad + weight_decay * param;  buf_1 = g, buf_t = momentum * buf_{t-1} + g;
    direction = g + momentum * buf_t (Nesterov) or buf_t (heavy ball) or g (momentum 0);  param -= lr * direction.
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, fused: bool = False,
    ) -> None:
        super().__init__(params, lr, weight_decay, fused)
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = self._state() if momentum else {}

    def _fused_step(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        first_step = self.steps == 1 and bool(self.momentum)  # only the momentum buffer starts differently
        self.kernels.sgd(param, grad, self.velocity.get(name), self.lr, self.momentum, self.weight_decay,
                         bool(self.weight_decay), bool(self.momentum), self.nesterov, first_step)

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        for name, param in self.params.items():
            direction = self._l2_gradient(name, grads[name])
            if self.momentum:
                direction = self._momentum_direction(name, direction)
            update = np.multiply(direction, self.lr, out=self.update_buffers[name])
            param -= update

    def _momentum_direction(self, name: str, grad: np.ndarray) -> np.ndarray:
        buf = self.velocity[name]
        if self.steps == 1:
            np.copyto(buf, grad)
        else:
            buf *= self.momentum
            buf += grad
        if not self.nesterov:
            return buf
        direction = np.multiply(buf, self.momentum, out=self.update_buffers[name])
        direction += grad
        return direction


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, eps placed as torch.optim.Adam places it.

    g = grad + weight_decay * param (L2);  m_t = beta1 m + (1 - beta1) g;  v_t = beta2 v + (1 - beta2) g^2;
    denom = sqrt(v_t) / sqrt(1 - beta2^t) + eps;  param -= lr / (1 - beta1^t) * m_t / denom.

    For speed the moments are stored scaled, M = m / (1 - beta1) and V = v / (1 - beta2), so that each
    moment update is two array passes (M = beta1 M + g; V = beta2 V + g^2), and the constant factors are
    folded into two scalars of the final update. The result is the formula above, algebraically exactly
    (equal to torch's update to rounding: see tests/test_scratch_optim.py).
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
        weight_decay: float = 0.0, fused: bool = False,
    ) -> None:
        super().__init__(params, lr, weight_decay, fused)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.scaled_first_moment = self._state()
        self.scaled_second_moment = self._state()
        self.shrink = 1.0  # AdamW's decoupled decay factor of this step, for the fused kernel

    def _scalars(self) -> tuple[float, float]:
        """(denominator_shift, step_scale) of step self.steps, the two folded constants of the scaled update."""
        # With c = sqrt(1 - beta2^t) / sqrt(1 - beta2), sqrt(v_t) / sqrt(1 - beta2^t) = sqrt(V) / c, so
        # lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
        #   = [lr / (1 - beta1^t) * (1 - beta1) * c] * M / (sqrt(V) + eps * c).
        c = math.sqrt(1.0 - self.beta2**self.steps) / math.sqrt(1.0 - self.beta2)
        return self.eps * c, self.lr / (1.0 - self.beta1**self.steps) * (1.0 - self.beta1) * c

    def _fused_step(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        denominator_shift, step_scale = self._scalars()
        self.kernels.adam(param, grad, self.scaled_first_moment[name], self.scaled_second_moment[name], self.beta1,
                          self.beta2, denominator_shift, step_scale, self.weight_decay, self.shrink,
                          bool(self.weight_decay), self.shrink != 1.0)

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        denominator_shift, step_scale = self._scalars()
        for name, param in self.params.items():
            grad, work = self._l2_gradient(name, grads[name]), self.update_buffers[name]
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


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

    param *= 1 - lr * weight_decay, then the Adam update above on the plain gradient (no L2 term).
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
        weight_decay: float = 0.01, fused: bool = False,
    ) -> None:
        super().__init__(params, lr, beta1, beta2, eps, fused=fused)
        self.decoupled_weight_decay = weight_decay

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """One update. grads: {name: array shaped like params[name]}; read, not modified."""
        self.shrink = 1.0 - self.lr * self.decoupled_weight_decay if self.decoupled_weight_decay else 1.0
        super().step(grads)

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        if self.decoupled_weight_decay:
            for param in self.params.values():
                param *= self.shrink
        super()._reference_step(grads)


class RMSprop(Optimizer):
    """RMSprop (Hinton 2012), optionally centered and with momentum, as torch.optim.RMSprop.

    g = grad + weight_decay * param;  s_t = alpha s + (1 - alpha) g^2;
    centered: a_t = a + (1 - alpha) (g - a) and avg = sqrt(s_t - a_t^2) + eps, else avg = sqrt(s_t) + eps;
    momentum > 0: buf_t = momentum buf + g / avg and param -= lr * buf_t, else param -= lr * g / avg.
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, alpha: float = 0.99, eps: float = 1e-8,
        momentum: float = 0.0, centered: bool = False, weight_decay: float = 0.0, fused: bool = False,
    ) -> None:
        super().__init__(params, lr, weight_decay, fused)
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered
        self.square_average = self._state()
        self.gradient_average = self._state() if centered else {}
        self.velocity = self._state() if momentum else {}

    def _fused_step(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        self.kernels.rmsprop(param, grad, self.square_average[name],
                             self.gradient_average.get(name), self.velocity.get(name),
                             self.lr, self.alpha, self.eps, self.momentum, self.weight_decay, bool(self.weight_decay),
                             bool(self.momentum), self.centered)

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        for name, param in self.params.items():
            grad, work = self._l2_gradient(name, grads[name]), self.update_buffers[name]
            square = self.square_average[name]
            square *= self.alpha
            np.multiply(grad, 1.0 - self.alpha, out=work)
            work *= grad
            square += work
            if self.centered:
                average = self.gradient_average[name]
                np.subtract(grad, average, out=work)
                work *= 1.0 - self.alpha
                average += work
                np.multiply(average, average, out=work)
                np.subtract(square, work, out=work)
                np.sqrt(work, out=work)
            else:
                np.sqrt(square, out=work)
            work += self.eps
            np.divide(grad, work, out=work)
            if self.momentum:
                buf = self.velocity[name]
                buf *= self.momentum
                buf += work
                work = np.multiply(buf, self.lr, out=work)
            else:
                work *= self.lr
            param -= work


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as torch.optim.Adagrad with lr_decay 0.

    g = grad + weight_decay * param;  s_t = s + g^2 (s_0 = initial_accumulator_value);
    param -= lr * g / (sqrt(s_t) + eps).
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, eps: float = 1e-10, weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0, fused: bool = False,
    ) -> None:
        super().__init__(params, lr, weight_decay, fused)
        self.eps = eps
        self.squared_sum = self._state(initial_accumulator_value)

    def _fused_step(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        self.kernels.adagrad(param, grad, self.squared_sum[name], self.lr, self.eps, self.weight_decay,
                             bool(self.weight_decay))

    def _reference_step(self, grads: dict[str, np.ndarray]) -> None:
        for name, param in self.params.items():
            grad, work = self._l2_gradient(name, grads[name]), self.update_buffers[name]
            squared_sum = self.squared_sum[name]
            np.multiply(grad, grad, out=work)
            squared_sum += work
            np.sqrt(squared_sum, out=work)
            work += self.eps
            np.divide(grad, work, out=work)
            work *= self.lr
            param -= work
