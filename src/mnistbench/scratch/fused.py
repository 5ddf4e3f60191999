"""The compiled kernels: one C loop per optimizer, the loss's own passes and the layers' bias and ReLU passes
(scratch/kernels.c, built at install as mnistbench.scratch._kernels), held to the NumPy references of
scratch/optim.py, scratch/losses.py and scratch/layers.py bit for bit.

`kernels()` is the extension module, or None where it cannot be used: not built (no C compiler at install), or
built from another kernels.c than the one beside it (the source changed after `pip install -e .`). Either way
the optimizers, the loss and the layers run their NumPy references, which give the same bits; a warning says so
once, with the fix.

Its functions, all updating param (and the optimizer's state) in place; arrays are C-contiguous float32 or float64,
all of param's type and size; a state array the settings do not use may be None:
  sgd(param, grad, velocity, lr, momentum, weight_decay, decay, use_momentum, nesterov, first_step)
  adam(param, grad, first, second, beta1, beta2, denominator_shift, step_scale, weight_decay, shrink, decay,
       decoupled)
  rmsprop(param, grad, square, average, velocity, lr, alpha, eps, momentum, weight_decay, decay, use_momentum,
          centered)
  adagrad(param, grad, squared_sum, lr, eps, weight_decay, decay)
and the loss's passes around NumPy's exp and log (scratch/losses.py `softmax_cross_entropy_fused`):
  loss_shift(logits, labels, true_shifted); loss_finish(probs, labels, sums, log_sums, true_shifted) -> float
and the layers' passes (scratch/layers.py), in place on a batch: a hidden layer's (C-ordered, ReLU only)
  bias_relu(out, b); relu_backward_bias_grad(dout, out, db)
and the output layer's (on the Fortran-ordered logits and their gradient)
  bias_add(out, b); bias_grad(dout, db)
INSTRUCTION_SET names the clone of the loops this CPU runs (avx512f, avx2 or the baseline).
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).with_name("kernels.c")
REBUILD = "pip install -e . (a C compiler is needed)"

log = logging.getLogger(__name__)


@cache
def kernels() -> ModuleType | None:
    """The compiled kernels built from this checkout's kernels.c, or None (logged once, with the fix)."""
    try:
        from mnistbench.scratch import _kernels
    except ImportError:
        log.warning("the fused optimizer kernels are not built: optimizers, loss and layers run their NumPy "
                    "reference (same bits, slower); to build them: %s", REBUILD)
        return None
    if SOURCE.is_file() and hashlib.sha256(SOURCE.read_bytes()).hexdigest() != _kernels.SOURCE_SHA256:
        log.warning("%s changed since the fused optimizer kernels were built: optimizers, loss and layers run "
                    "their NumPy reference (same bits, slower); to rebuild: %s", SOURCE, REBUILD)
        return None
    return _kernels


def instruction_set() -> str | None:
    """The instruction set the fused kernels run on this CPU, for the training record; None without them."""
    built = kernels()
    return built.INSTRUCTION_SET if built else None
