"""The compiled kernels (scratch/kernels.c) give the same BITS as the NumPy reference on the same machine: the fused
optimizer steps against scratch/optim.py with fused=False (every optimizer, each boolean both ways, non-zero weight
decay, float32 and float64, many steps with a learning rate that changes every step), the fused loss against
scratch/losses.py softmax_cross_entropy, the fused ReLU passes against scratch/layers.py's reference, and a whole
network's steps on both paths."""

from __future__ import annotations

import hashlib
import math
import sys

import numpy as np
import pytest

from mnistbench.backends import make_backend
from mnistbench.backends.scratch import make_optimizer
from mnistbench.params import NetworkParams, load_params
from mnistbench.scratch import fused as fused_kernels
from mnistbench.scratch.activations import ACTIVATIONS
from mnistbench.scratch.layers import bias_activation, bias_relu_fused, hidden_passes
from mnistbench.scratch.losses import softmax_cross_entropy, softmax_cross_entropy_fused
from mnistbench.scratch.network import MLP
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


def test_the_kernels_are_built_from_this_checkouts_source() -> None:
    """The fast path is really taken here: the extension is built, from the kernels.c beside it (a stale build
    would send every optimizer to its reference, and the tests above would compare the reference with itself)."""
    built = fused_kernels.kernels()
    assert built is not None, f"mnistbench.scratch._kernels is not built: {fused_kernels.REBUILD}"
    assert hashlib.sha256(fused_kernels.SOURCE.read_bytes()).hexdigest() == built.SOURCE_SHA256


@pytest.mark.parametrize("case", ["not built", "source edited"])
def test_kernels_that_cannot_be_used_send_the_optimizers_to_their_reference(case, tmp_path, monkeypatch,
                                                                           caplog) -> None:
    if case == "not built":
        monkeypatch.setitem(sys.modules, "mnistbench.scratch._kernels", None)  # its import fails...
        monkeypatch.delattr(sys.modules["mnistbench.scratch"], "_kernels", raising=False)  # ...even once loaded
        message = "the fused optimizer kernels are not built"
    else:
        edited = tmp_path / "kernels.c"
        edited.write_bytes(fused_kernels.SOURCE.read_bytes() + b"/* edited */\n")
        monkeypatch.setattr(fused_kernels, "SOURCE", edited)
        message = "changed since the fused optimizer kernels were built"
    fused_kernels.kernels.cache_clear()
    try:
        assert fused_kernels.kernels() is None
        with pytest.raises(RuntimeError, match="pip install -e"):
            Adam({"all": np.zeros(3, np.float32)}, lr=1e-3, fused=True)
        assert make_optimizer(load_params("params.yaml").models["scratch_adam"], {"all": np.zeros(3)}).kernels is None
    finally:
        fused_kernels.kernels.cache_clear()
    assert message in caplog.text and "pip install -e ." in caplog.text


def test_the_kernels_refuse_arrays_that_would_be_misread() -> None:
    built = fused_kernels.kernels()
    param, grad = np.zeros(8, np.float32), np.ones(8, np.float32)
    state = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="grad: 7 elements"):
        built.adagrad(param, grad[:7], state, 0.1, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="squared_sum: .* type 'd'"):
        built.adagrad(param, grad, np.zeros(8), 0.1, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="overlaps"):
        built.adagrad(param, grad, param, 0.1, 1e-8, 0.0, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        built.adagrad(np.zeros(8, np.int32), grad, state, 0.1, 1e-8, 0.0, False)
    with pytest.raises(TypeError, match="an array is needed"):
        built.sgd(param, grad, None, 0.1, 0.9, 0.0, False, True, False, False)  # momentum without its buffer
    with pytest.raises(TypeError, match="takes 7 arguments"):
        built.adagrad(param, grad, state)
    assert not param.any()  # nothing was written by a refused call


def test_the_training_record_names_the_kernels_instruction_set() -> None:
    backend = backend_of(load_params("params.yaml").models["scratch_adam"], 4)
    assert backend.describe()["fused_optimizer"] == fused_kernels.kernels().INSTRUCTION_SET
    assert backend.describe()["fused_optimizer"] in ("avx512f", "avx2", "x86-64 baseline",
                                                     "baseline (no clones on this platform)")


def backend_of(run, rows: int):  # noqa: ANN001, ANN201
    params = load_params("params.yaml")
    return make_backend(run, params.network, initial_weights(0, params.network),
                        np.zeros((rows, 784), np.float32), np.zeros(rows, np.int64), threads=1)


@pytest.mark.parametrize("model", ["scratch_sgd", "scratch_adam"])
def test_the_backend_steps_every_job_fused(model) -> None:
    """The kernels load in about a millisecond, so every job takes them, plain SGD's and evaluate jobs' included."""
    assert backend_of(load_params("params.yaml").models[model], 4).optimizer.kernels is fused_kernels.kernels()


def fused_and_reference_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[tuple, tuple]:
    """(loss, gradient bytes) of both loss paths on copies of the Fortran-ordered logits."""
    n = len(labels)
    work = (np.empty(n, logits.dtype), np.empty(n, logits.dtype), np.empty(n, np.float64))
    reference = softmax_cross_entropy(logits.copy(order="F"), labels, inplace=True)
    fused = softmax_cross_entropy_fused(logits.copy(order="F"), labels, fused_kernels.kernels(), work)
    return (fused[0], fused[1].tobytes()), (reference[0], reference[1].tobytes())


# Batch sizes of every kind of pairwise summation NumPy does: under 8, one block of up to 128 (the default batches
# and an epoch's last: 55,000 rows leave 24 at batch 32, 88 at 128), and the recursive split of a full batch.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 7, 8, 24, 32, 88, 128, 129, 1000, 55_000])
def test_fused_loss_gives_the_bits_of_the_reference(rows, dtype) -> None:
    rng = np.random.default_rng(rows)
    labels = rng.integers(0, 10, rows)
    for scale in (0.1, 5.0, 1e4):  # 1e4: most exps underflow to 0, as in the stability tests
        logits = np.asfortranarray(rng.normal(scale=scale, size=(rows, 10)).astype(dtype))
        fused, reference = fused_and_reference_loss(logits, labels)
        assert fused == reference, scale


def test_fused_loss_is_not_finite_where_the_reference_is_not() -> None:
    logits = np.asfortranarray(np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32))
    labels = np.arange(32) % 10
    for value in (np.nan, np.inf, -np.inf):
        broken = logits.copy(order="F")
        broken[5, 3] = value
        with np.errstate(invalid="ignore"):  # the reference's inf - inf
            (fused_loss, _), (reference_loss, _) = fused_and_reference_loss(broken, labels)
        assert math.isfinite(fused_loss) == math.isfinite(reference_loss), value
        assert math.isnan(fused_loss) == math.isnan(reference_loss), value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_shift_gives_the_bits_of_the_reference_shift_for_nan_inf_and_signed_zeros(dtype) -> None:
    """loss_shift's row maxima and shift against the reference's `logits - np.maximum.reduce(logits, axis=1)` and its
    true-class gather, byte for byte: NaN (two payloads) and +-inf in the first, a middle and the last class, and
    rows whose maximum is a tie of -0 and +0, in either order; 9 and 33 rows (the SIMD body and its tail)."""
    for rows in (9, 33):
        rng = np.random.default_rng(rows)
        logits = rng.normal(size=(rows, 10)).astype(dtype)
        payload_bits = (np.uint32(0x7FC00001) if dtype == np.float32 else np.uint64(0x7FF8000000000001))
        quiet_nan = payload_bits.view(dtype)  # a quiet NaN with a payload of 1
        logits[0, 0], logits[1, 4], logits[2, 9] = np.nan, quiet_nan, np.nan
        logits[3, 0], logits[4, 5], logits[5, 9], logits[6, 2] = np.inf, -np.inf, np.inf, -np.inf
        logits[7] = -1.0
        logits[7, 3], logits[7, 6] = -0.0, 0.0
        logits[8] = -1.0
        logits[8, 3], logits[8, 6] = 0.0, -0.0
        # Fortran-ordered, as the network's logits: NumPy's reduction (and so its tie and NaN order) follows the layout
        labels, logits = np.arange(rows) % 10, np.asfortranarray(logits)
        with np.errstate(invalid="ignore"):  # inf - inf
            expected = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
        shifted, true_shifted = logits.copy(order="F"), np.empty(rows, dtype)
        with np.errstate(invalid="ignore"):
            fused_kernels.kernels().loss_shift(shifted, labels, true_shifted)
        assert shifted.tobytes(order="F") == expected.tobytes(order="F"), rows
        assert true_shifted.tobytes() == expected[np.arange(rows), labels].tobytes(), rows


def test_the_fused_loss_refuses_labels_that_are_not_classes() -> None:
    logits = np.zeros((4, 10), np.float32, order="F")
    with pytest.raises(IndexError, match="labels: 10 is not a class of 10"):
        fused_kernels.kernels().loss_shift(logits, np.array([0, 1, 10, 2]), np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"true_shifted: \(4,\) of float32"):
        fused_kernels.kernels().loss_shift(logits, np.array([0, 1, 2, 3]), np.empty(4, np.float64))
    with pytest.raises(ValueError, match="not Fortran contiguous"):  # a C-ordered array is not what the loops read
        fused_kernels.kernels().loss_shift(np.zeros((4, 10), np.float32), np.arange(4), np.empty(4, np.float32))


def layer_batch(rows: int, width: int, dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre-activations (rows, width), biases (width,), upstream gradients (rows, width)) with the values the
    elementwise passes treat specially: -0 and +0 sums, NaN, +-inf, and a column of -0 gradients."""
    rng = np.random.default_rng(seed)
    pre = rng.normal(size=(rows, width)).astype(dtype)
    b = rng.normal(size=width).astype(dtype)
    b[0] = 0.0
    pre[0, : min(width, 5)] = [-0.0, np.nan, -np.inf, np.inf, 0.0][: min(width, 5)]
    dout = rng.normal(scale=10.0 ** -(seed % 4), size=(rows, width)).astype(dtype)
    dout[:, -1] = -0.0
    dout[-1, 0] = np.inf
    return pre, b, dout


# Widths below, at and past the SIMD widths (the loops' vector body and tail), and the default layer (128)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("rows", "width"), [(1, 128), (24, 128), (32, 128), (7, 33), (129, 17), (3, 1)])
def test_fused_relu_passes_give_the_bits_of_the_reference(rows, width, dtype) -> None:
    pre, b, dout = layer_batch(rows, width, dtype, rows * width)
    built = fused_kernels.kernels()
    reference_forward, reference_backward = hidden_passes("relu", None)
    fused_forward, fused_backward = hidden_passes("relu", built)
    out, cache = reference_forward(pre.copy(), b)
    fused_out, fused_cache = fused_forward(pre.copy(), b)
    assert fused_out.tobytes() == out.tobytes() and fused_cache is fused_out
    assert (np.isnan(out).any() or width == 1) and (out == 0).any()
    db, fused_db = np.empty(width, dtype), np.full(width, 7.0, dtype)
    with np.errstate(invalid="ignore"):  # the reference's inf * 0
        dpre = reference_backward(dout.copy(), cache, db)
        fused_dpre = fused_backward(dout.copy(), fused_cache, fused_db)
    assert fused_dpre.tobytes() == dpre.tobytes()
    assert fused_db.tobytes() == db.tobytes()
    assert not np.signbit(db[-1])  # the -0 column sums to +0, as NumPy's add.reduce does


def test_only_relu_takes_the_compiled_passes() -> None:
    built = fused_kernels.kernels()
    assert hidden_passes("relu", built)[0].func is bias_relu_fused
    for name, (forward, backward) in ACTIVATIONS.items():
        passes = hidden_passes(name, None if name == "relu" else built)
        assert passes[0].func is bias_activation and passes[0].keywords == {"forward": forward}, name
        assert passes[1].keywords == {"backward": backward}, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("activation", "hidden"), [("relu", [128]), ("relu", [48, 24, 16]), ("tanh", [24, 16]),
                                                    ("sigmoid", [24])])
def test_a_network_on_the_kernels_trains_the_bits_of_the_reference(activation, hidden, dtype) -> None:
    """The whole step, every layer's passes and the loss, on both paths: several SGD steps, batches of two sizes
    (the epoch's last batch is smaller), then the same parameters and the same logits."""
    network = NetworkParams(hidden=hidden, init="xavier_uniform", dtype=np.dtype(dtype).name, activation=activation)
    rng = np.random.default_rng(5)
    images = rng.random((40, 784)).astype(dtype)
    labels = rng.integers(0, 10, 40)
    results = []
    for built in (None, fused_kernels.kernels()):
        mlp = MLP(initial_weights(0, network), dtype, activation, built)
        losses = []
        for rows in (slice(0, 32), slice(32, 40), slice(0, 32)):
            loss, grads = mlp.loss_and_gradients(images[rows], labels[rows])
            losses.append(loss)
            mlp.flat_params -= np.asarray(0.1, dtype) * mlp.flat_grads
        results.append((losses, mlp.flat_params.tobytes(), mlp.flat_grads.tobytes(), mlp.logits(images).tobytes()))
    assert results[0] == results[1]


def test_the_relu_passes_refuse_arrays_that_would_be_misread() -> None:
    built = fused_kernels.kernels()
    out, b = np.zeros((4, 6), np.float32), np.ones(6, np.float32)
    with pytest.raises(ValueError, match=r"b: \(6,\) of float32 is needed"):
        built.bias_relu(out, b[:5])
    with pytest.raises(ValueError, match=r"b: \(6,\) of float32"):
        built.bias_relu(out, np.ones(6))
    with pytest.raises(ValueError, match="not C-contiguous"):
        built.bias_relu(np.asfortranarray(out), b)
    with pytest.raises(ValueError, match=r"out: \(4, 6\) of float32"):
        built.relu_backward_bias_grad(out, out[:3], b)
    with pytest.raises(ValueError, match="db overlaps dout"):
        built.relu_backward_bias_grad(out, np.ones((4, 6), np.float32), out[0])
    assert not out.any() and (b == 1).all()  # nothing was written by a refused call


# Every kind of NumPy's pairwise column sum (under 8 rows, one block, the recursive split of a full batch)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 7, 8, 24, 32, 88, 128, 129, 8193, 55_000])
def test_fused_output_bias_passes_give_the_bits_of_the_reference(rows, dtype) -> None:
    rng = np.random.default_rng(rows)
    logits = np.asfortranarray((rng.normal(size=(rows, 10)) * 10.0 ** rng.integers(-3, 3, (rows, 10))).astype(dtype))
    logits[:, 3] = -0.0
    b = rng.normal(size=10).astype(dtype)
    built = fused_kernels.kernels()
    out, fused_out = logits.copy(order="F"), logits.copy(order="F")
    out += b
    built.bias_add(fused_out, b)
    assert fused_out.tobytes() == out.tobytes()
    db = np.full(10, 7.0, dtype)
    built.bias_grad(logits, db)
    assert db.tobytes() == np.add.reduce(logits, axis=0).tobytes()
    assert not np.signbit(db[3])


def test_the_output_bias_passes_refuse_arrays_that_would_be_misread() -> None:
    built = fused_kernels.kernels()
    logits, db = np.ones((4, 10), np.float32, order="F"), np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="not Fortran contiguous"):  # a C-ordered batch would be read by columns
        built.bias_add(np.ones((4, 10), np.float32), db)
    with pytest.raises(ValueError, match=r"db: \(10,\) of float32"):
        built.bias_grad(logits, db[:9])
    with pytest.raises(ValueError, match="db overlaps dout"):
        built.bias_grad(logits, logits.ravel(order="F")[:10])  # a view of its first 10 elements
    assert not db.any() and (logits == 1).all()
