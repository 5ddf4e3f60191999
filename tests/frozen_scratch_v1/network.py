"""The 784-hidden-10 MLP: dense -> ReLU -> dense -> softmax cross-entropy, over whole mini-batches.

Parameters live in one contiguous vector (`flat_params`) and `params` holds named views into it
(w1 (784, h), b1 (h,), w2 (h, 10), b2 (10,)); the gradients likewise (`flat_grads`, `grads`). An optimizer
can therefore update all parameters as one array (a few NumPy calls per step instead of a few per tensor),
or parameter by parameter through the named views: both see the same memory.
"""

from __future__ import annotations

import numpy as np

from frozen_scratch_v1.activations import relu_backward, relu_forward
from frozen_scratch_v1.layers import dense_backward, dense_forward
from frozen_scratch_v1.losses import softmax_cross_entropy

PARAM_NAMES = ("w1", "b1", "w2", "b2")


class MLP:
    """Two dense layers with a ReLU between them, trained with a fused softmax cross-entropy.

    weights: {"w1": (n_in, h), "b1": (h,), "w2": (h, k), "b2": (k,)}, copied into the network in `dtype`.
    """

    def __init__(self, weights: dict[str, np.ndarray], dtype: np.dtype = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        shapes = {name: np.shape(weights[name]) for name in PARAM_NAMES}
        self.flat_params = np.empty(sum(int(np.prod(s)) for s in shapes.values()), dtype=self.dtype)
        self.flat_grads = np.zeros_like(self.flat_params)
        self.params = _named_views(self.flat_params, shapes)
        self.grads = _named_views(self.flat_grads, shapes)
        for name in PARAM_NAMES:
            self.params[name][...] = weights[name]
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x: (n, n_in) in the network's dtype -> logits (n, k), a new array."""
        hidden, _ = relu_forward(dense_forward(x, self.params["w1"], self.params["b1"])[0], inplace=True)
        return dense_forward(hidden, self.params["w2"], self.params["b2"])[0]

    def loss_and_gradients(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of the batch and the gradient of every parameter.

        x: (batch, n_in) in the network's dtype; labels: (batch,) int. Returns (loss as float, `self.grads`):
        the gradients are written into the network's gradient buffers, overwritten by the next call.
        """
        hidden_buffer, logits_buffer = self._batch_buffers(len(x))
        p, g = self.params, self.grads
        pre_activation, cache1 = dense_forward(x, p["w1"], p["b1"], out=hidden_buffer)
        hidden, relu_cache = relu_forward(pre_activation, inplace=True)
        logits, cache2 = dense_forward(hidden, p["w2"], p["b2"], out=logits_buffer)
        loss, dlogits = softmax_cross_entropy(logits, labels, inplace=True)
        dhidden, _, _ = dense_backward(dlogits, cache2, dw=g["w2"], db=g["b2"])
        dpre = relu_backward(dhidden, relu_cache, inplace=True)
        dense_backward(dpre, cache1, dw=g["w1"], db=g["b1"], need_dx=False)
        return loss, self.grads

    def weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters: {"w1": (n_in, h), "b1": (h,), "w2": (h, k), "b2": (k,)}."""
        return {name: self.params[name].copy() for name in PARAM_NAMES}

    def _batch_buffers(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(hidden (batch, h), logits (batch, k)) activation buffers, reused by every batch of this size."""
        if batch not in self._buffers:
            hidden_units, classes = self.params["w2"].shape
            hidden = np.empty((batch, hidden_units), self.dtype)
            logits = np.empty((batch, classes), self.dtype, order="F")  # fast row max/sum in the loss
            self._buffers[batch] = (hidden, logits)
        return self._buffers[batch]


def _named_views(flat: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Consecutive reshaped views of `flat`, one per name, in the order of `shapes`."""
    views, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = flat[start : start + size].reshape(shape)
        start += size
    return views
