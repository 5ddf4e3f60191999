"""The MLP: L dense layers with an activation between each pair, softmax cross-entropy, over whole mini-batches.

Parameters live in one contiguous vector (`flat_params`) and `params` holds named views into it, in the order
w1, b1, ..., wL, bL (w_i (n_{i-1}, n_i), b_i (n_i,), n_0 = 784 inputs, n_L = 10 classes); the gradients likewise
(`flat_grads`, `grads`). An optimizer can therefore update all parameters as one array (a few NumPy calls per
step instead of a few per tensor), or parameter by parameter through the named views: both see the same memory.

For 784-h-10 with ReLU this runs exactly the operations of the two-layer network it generalizes, in its order but
for two independent ones (a hidden layer's bias gradient now comes before its weight gradient, beside ReLU's
backward); tests/test_scratch_bytes.py holds it to a frozen copy of that code, byte for byte, on both paths.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from mnistbench.scratch.layers import dense_backward, dense_forward, hidden_backward, hidden_forward, hidden_passes
from mnistbench.scratch.losses import softmax_cross_entropy, softmax_cross_entropy_fused

# Per batch size: the hidden activations, their gradients, the logits, the fused loss's work vectors
# (MLP._batch_buffers).
BatchBuffers = tuple[list[np.ndarray], list[np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]


def param_names(n_layers: int) -> tuple[str, ...]:
    """("w1", "b1", ..., "wL", "bL") for L = n_layers dense layers."""
    return tuple(f"{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("w", "b"))


def count_layers(weights: dict[str, np.ndarray]) -> int:
    """L, the number of dense layers of a weight mapping in the shared layout (w1, b1, ..., wL, bL)."""
    n_layers = len(weights) // 2
    if set(weights) != set(param_names(n_layers)):
        raise ValueError(f"weights {sorted(weights)} are not the layout w1, b1, ..., wL, bL")
    return n_layers


class MLP:
    """L dense layers with `activation` after every one but the last, trained with a fused softmax cross-entropy.

    weights: {"w1": (n_in, h1), "b1": (h1,), ..., "wL": (h_{L-1}, k), "bL": (k,)}, copied in `dtype`.
    activation: "relu" | "tanh" | "sigmoid". kernels: the compiled kernels (scratch/fused.py `kernels`), which
    the loss then runs on (`softmax_cross_entropy_fused`), with ReLU's passes and the bias parts (layers.py
    `hidden_passes`, the output layer's bias_add and bias_grad), all with the same bits; or None for the NumPy
    reference.
    """

    def __init__(self, weights: dict[str, np.ndarray], dtype: np.dtype = np.float32, activation: str = "relu",
                 kernels: ModuleType | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.kernels = kernels
        self.n_layers = count_layers(weights)
        self.bias_activation, self.activation_bias_backward = hidden_passes(activation, kernels)
        # the output layer's bias passes on the Fortran-ordered logits buffer: compiled, or NumPy's (None)
        self.output_bias_add, self.output_bias_grad = (kernels.bias_add, kernels.bias_grad) if kernels else (None, None)
        names = param_names(self.n_layers)
        shapes = {name: np.shape(weights[name]) for name in names}
        self.flat_params = np.empty(sum(int(np.prod(s)) for s in shapes.values()), dtype=self.dtype)
        self.flat_grads = np.zeros_like(self.flat_params)
        self.params = _named_views(self.flat_params, shapes)
        self.grads = _named_views(self.flat_grads, shapes)
        for name in names:
            self.params[name][...] = weights[name]
        # (w, b, dw, db) of each layer in order: the training step reads them without building names
        self._layers = [(self.params[f"w{layer}"], self.params[f"b{layer}"], self.grads[f"w{layer}"],
                         self.grads[f"b{layer}"]) for layer in range(1, self.n_layers + 1)]
        self._buffers: dict[int, BatchBuffers] = {}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x: (n, n_in) in the network's dtype -> logits (n, k), a new array."""
        *hidden_layers, (w_last, b_last, _, _) = self._layers
        out = x
        for w, b, _, _ in hidden_layers:
            out, _ = hidden_forward(out, w, b, self.bias_activation)
        return dense_forward(out, w_last, b_last)[0]

    def loss_and_gradients(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of the batch and the gradient of every parameter.

        x: (batch, n_in) in the network's dtype; labels: (batch,) int. Returns (loss as float, `self.grads`):
        the gradients are written into the network's gradient buffers, overwritten by the next call.
        """
        hidden_buffers, gradient_buffers, logits_buffer, loss_work = self._batch_buffers(len(x))
        *hidden_layers, (w_last, b_last, dw_last, db_last) = self._layers
        out, caches = x, []
        for (w, b, _, _), buffer in zip(hidden_layers, hidden_buffers, strict=True):
            out, cache = hidden_forward(out, w, b, self.bias_activation, out=buffer)
            caches.append(cache)
        logits, last_cache = dense_forward(out, w_last, b_last, out=logits_buffer, bias_add=self.output_bias_add)
        if self.kernels is None:
            loss, dlogits = softmax_cross_entropy(logits, labels, inplace=True)
        else:
            loss, dlogits = softmax_cross_entropy_fused(logits, labels, self.kernels, loss_work)
        need_dx = bool(hidden_layers)
        upstream, _, _ = dense_backward(dlogits, last_cache, dw=dw_last, db=db_last, need_dx=need_dx,
                                        dx=gradient_buffers[-1] if need_dx else None, bias_grad=self.output_bias_grad)
        for layer in range(len(hidden_layers), 0, -1):
            _, _, dw, db = self._layers[layer - 1]
            upstream = hidden_backward(upstream, caches[layer - 1], self.activation_bias_backward, dw, db,
                                       need_dx=layer > 1, dx=gradient_buffers[layer - 2] if layer > 1 else None)
        return loss, self.grads

    def weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters: {"w1": (n_in, h1), "b1": (h1,), ..., "bL": (k,)}."""
        return {name: view.copy() for name, view in self.params.items()}

    def _batch_buffers(self, batch: int) -> BatchBuffers:
        """([hidden_i (batch, h_i) for each hidden layer], [the gradient at hidden_i, (batch, h_i)], logits (batch, k),
        the fused loss's work vectors (true_shifted, sums: (batch,) in the dtype; log_sums: (batch,) float64)), reused
        by every batch of this size."""
        if batch not in self._buffers:
            widths = [b.shape[0] for _, b, _, _ in self._layers]
            hidden = [np.empty((batch, width), self.dtype) for width in widths[:-1]]
            gradients = [np.empty((batch, width), self.dtype) for width in widths[:-1]]
            logits = np.empty((batch, widths[-1]), self.dtype, order="F")  # fast row max/sum in the loss
            loss_work = (np.empty(batch, self.dtype), np.empty(batch, self.dtype), np.empty(batch, np.float64))
            self._buffers[batch] = (hidden, gradients, logits, loss_work)
        return self._buffers[batch]


def _named_views(flat: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Consecutive reshaped views of `flat`, one per name, in the order of `shapes`."""
    views, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = flat[start : start + size].reshape(shape)
        start += size
    return views
