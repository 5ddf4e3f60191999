"""The fused optimizer steps (scratch/fused.py, one numba loop per optimizer) give the same BITS as the NumPy
reference (scratch/optim.py, fused=False) on the same machine: every optimizer, each boolean both ways, non-zero
weight decay, float32 and float64, over many steps with a learning rate that changes every step."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from mnistbench.backends import make_backend
from mnistbench.backends.scratch import fused_steps_pay
from mnistbench.params import load_params
from mnistbench.scratch.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from mnistbench.training import initial_weights

# A parameter vector whose length is no multiple of any SIMD width (the kernels' vector loop and its tail both run)
SIZE = 1037
STEPS = 60
# Python floats, as the backend hands them over (a NumPy float64 would promote a float32 update: NEP 50)
RATES = [1e-3 * (1.5 + math.cos(0.3 * t)) for t in range(STEPS)]

SETTINGS = {
    "sgd": lambda ps, f: SGD(ps, lr=0.1, fused=f),
    "sgd-weight_decay": lambda ps, f: SGD(ps, lr=0.1, weight_decay=1e-2, fused=f),
    "sgd-momentum": lambda ps, f: SGD(ps, lr=0.1, momentum=0.9, fused=f),
    "sgd-nesterov-weight_decay": lambda ps, f: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2,
                                                   fused=f),
    "adam": lambda ps, f: Adam(ps, lr=1e-3, fused=f),
    "adam-l2": lambda ps, f: Adam(ps, lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, fused=f),
    "adamw": lambda ps, f: AdamW(ps, lr=1e-3, weight_decay=0.1, fused=f),
    "adamw-no-decay": lambda ps, f: AdamW(ps, lr=1e-3, weight_decay=0.0, fused=f),
    "rmsprop": lambda ps, f: RMSprop(ps, lr=1e-3, fused=f),
    "rmsprop-centered": lambda ps, f: RMSprop(ps, lr=1e-3, centered=True, fused=f),
    "rmsprop-momentum-weight_decay": lambda ps, f: RMSprop(ps, lr=1e-3, momentum=0.8, weight_decay=1e-2, fused=f),
    "rmsprop-centered-momentum-weight_decay": lambda ps, f: RMSprop(ps, lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.8,
                                                                    centered=True, weight_decay=1e-2, fused=f),
    "adagrad": lambda ps, f: Adagrad(ps, lr=0.05, fused=f),
    "adagrad-initial_accumulator-weight_decay": lambda ps, f: Adagrad(ps, lr=0.05, eps=1e-8, weight_decay=1e-2,
                                                                      initial_accumulator_value=0.5, fused=f),
}


def gradient_sequence(dtype: np.dtype, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Gradients of varied scale, with exact zeros, as training produces."""
    rng = np.random.default_rng(7)
    sequence = []
    for step in range(STEPS):
        grad = rng.normal(scale=10.0 ** -(step % 5), size=shape).astype(dtype)
        grad.reshape(-1)[::17] = 0.0
        sequence.append(grad)
    return sequence


def train(make, dtype: np.dtype, fused: bool, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    params = {name: rng.normal(size=shape).astype(dtype) for name, shape in shapes.items()}
    optimizer = make(params, fused)
    sequences = {name: gradient_sequence(dtype, shape) for name, shape in shapes.items()}
    for step, rate in enumerate(RATES):
        optimizer.lr = rate
        optimizer.step({name: sequence[step] for name, sequence in sequences.items()})
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", SETTINGS.values(), ids=SETTINGS.keys())
def test_fused_step_gives_the_bits_of_the_reference_on_the_flat_vector(make, dtype) -> None:  # noqa: ANN001
    shapes = {"all": (SIZE,)}
    reference, fused = train(make, dtype, False, shapes), train(make, dtype, True, shapes)
    start = np.random.default_rng(3).normal(size=SIZE).astype(dtype)
    assert fused["all"].dtype == dtype
    assert not np.array_equal(reference["all"], start)
    assert fused["all"].tobytes() == reference["all"].tobytes()


@pytest.mark.parametrize("make", [SETTINGS["adamw"], SETTINGS["rmsprop-centered-momentum-weight_decay"]],
                         ids=["adamw", "rmsprop-centered-momentum-weight_decay"])
def test_fused_step_gives_the_bits_of_the_reference_tensor_by_tensor(make) -> None:  # noqa: ANN001
    shapes = {"w1": (31, 7), "b1": (7,), "w2": (7, 3), "b2": (3,)}
    reference, fused = train(make, np.float32, False, shapes), train(make, np.float32, True, shapes)
    assert all(fused[name].tobytes() == reference[name].tobytes() for name in shapes)


def test_fused_step_state_matches_the_reference_state() -> None:
    """Not only the parameters: the moments the next step reads are the same bits too."""
    grads = gradient_sequence(np.float32, (SIZE,))
    optimizers = []
    for fused in (False, True):
        optimizer = RMSprop({"all": np.ones(SIZE, np.float32)}, lr=1e-3, momentum=0.5, centered=True, fused=fused)
        for grad in grads[:10]:
            optimizer.step({"all": grad})
        optimizers.append(optimizer)
    reference, fused = optimizers
    for state in ("square_average", "gradient_average", "velocity"):
        assert getattr(fused, state)["all"].tobytes() == getattr(reference, state)["all"].tobytes(), state


def test_fused_steps_refuse_parameters_that_are_not_contiguous() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        Adam({"w": np.ones((4, 6), np.float32)[:, ::2]}, lr=1e-3, fused=True)


def test_numba_is_imported_only_by_a_fused_optimizer() -> None:
    """numba's import (~0.2 s) is paid by a job that steps fused, not by evaluate jobs or plain-SGD training."""
    code = ("import sys, numpy as np\n"
            "import mnistbench.backends.scratch, mnistbench.scratch.optim as optim\n"
            "optim.SGD({'all': np.zeros(3)}, lr=0.1).step({'all': np.ones(3)})\n"
            "before = 'numba' in sys.modules\n"
            "optim.Adam({'all': np.zeros(3)}, lr=0.1, fused=True)\n"
            "print(before, 'numba' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def backend_of(run, rows: int):  # noqa: ANN001, ANN201
    params = load_params("params.yaml")
    return make_backend(run, params.network, initial_weights(0, params.network),
                        np.zeros((rows, 784), np.float32), np.zeros(rows, np.int64), threads=1)


DEFAULT_ROWS = 55_000  # params.yaml data.n_train


@pytest.mark.parametrize(("model", "changes", "rows", "fused"), [
    ("scratch_sgd", {}, DEFAULT_ROWS, False),  # plain SGD: never
    ("scratch_adam", {}, DEFAULT_ROWS, True),  # 6,450 steps save ~0.7 s
    ("scratch_adam", {"epochs": 2}, DEFAULT_ROWS, False),  # 860 steps save less than numba's start-up
    ("scratch_adam", {"batch_size": 32}, 0, False),  # an evaluate job: no step
    ("scratch_adam", {"batch_size": 32}, 400, False),  # a small run
    ("scratch_sgd", {"momentum": 0.9}, DEFAULT_ROWS, True),
    ("scratch_sgd", {"weight_decay": 1e-4}, DEFAULT_ROWS, True),
    ("scratch_sgd", {"momentum": 0.9, "epochs": 1}, DEFAULT_ROWS, False),
])
def test_the_backend_steps_fused_where_it_pays(model, changes, rows, fused) -> None:  # noqa: ANN001
    default = load_params("params.yaml").models[model]
    run = type(default)(**{**default.__dict__, **changes})
    steps = run.epochs * math.ceil(rows / run.batch_size)
    assert fused_steps_pay(run, 101_770, steps) is fused
    assert (backend_of(run, rows).optimizer.kernels is not None) is fused


def test_loading_the_kernels_leaves_scipy_blas_unloaded_and_importable() -> None:
    code = ("import sys, numpy as np\n"
            "from mnistbench.scratch.optim import Adam\n"
            "optimizer = Adam({'all': np.zeros(5, np.float32)}, lr=0.1, fused=True)\n"
            "optimizer.load_kernels()\n"
            "optimizer.step({'all': np.ones(5, np.float32)})\n"
            "hidden = 'scipy.linalg.cython_blas' in sys.modules\n"
            "import scipy.linalg.cython_blas\n"
            "print(hidden, optimizer.params['all'][0] < 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
