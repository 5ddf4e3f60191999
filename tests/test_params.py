"""params.yaml validation: every bad value stops with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys

import pytest

from mnistbench.errors import MnistbenchError
from mnistbench.params import load_params, load_schema


def _edited(mapping: dict, dotted_key: str, value) -> dict:
    edited = copy.deepcopy(mapping)
    *parents, last = dotted_key.split(".")
    node = edited
    for part in parents:
        node = node[part]
    node[last] = value
    return edited


def test_default_params_are_valid_and_typed():
    params = load_params("params.yaml")
    assert set(params.models) >= {"scratch_sgd", "scratch_adam", "torch_adam"}
    assert params.models["torch_adam"].impl == "torch"
    assert params.models["scratch_sgd"].momentum == 0.0
    assert params.data.n_train + params.data.n_val <= 60_000
    assert len(params.seeds) >= 2


def test_the_schema_holds_no_defaults():
    """A default in the schema would change results without either orchestrator noticing: none may exist."""
    def defaults(node) -> list:
        if isinstance(node, dict):
            return (["default"] if "default" in node else []) + [found for value in node.values()
                                                                  for found in defaults(value)]
        return [found for value in node for found in defaults(value)] if isinstance(node, list) else []

    assert defaults(load_schema()) == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("models.scratch_adam.eps", "models.scratch_adam: 'eps' is a required property"),
        ("models.scratch_sgd.momentum", "models.scratch_sgd: 'momentum' is a required property"),
        ("models.torch_adam.device", "models.torch_adam: 'device' is a required property"),
        ("evaluate", "(top level): 'evaluate' is a required property"),
        ("network.dtype", "network: 'dtype' is a required property"),
        ("data.split_seed", "data: 'split_seed' is a required property"),
    ],
)
def test_every_value_a_stage_reads_must_be_written_out(default_params_mapping, write_params, key, expected):
    *parents, last = key.split(".")
    node = default_params_mapping
    for part in parents:
        node = node[part]
    del node[last]
    with pytest.raises(MnistbenchError, match=re.escape(expected)):
        load_params(write_params(default_params_mapping))


def test_the_old_model_key_names_its_new_name(default_params_mapping, write_params):
    default_params_mapping["model"] = default_params_mapping.pop("network")
    with pytest.raises(MnistbenchError, match="unknown key 'model' .*; it is now called 'network'"):
        load_params(write_params(default_params_mapping))


def test_a_value_an_optimizer_does_not_read_may_be_left_out(default_params_mapping, write_params):
    assert "beta1" not in default_params_mapping["models"]["scratch_sgd"]
    params = load_params(write_params(default_params_mapping))
    assert params.models["scratch_sgd"].beta1 is None
    assert params.mapping == default_params_mapping


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("models.scratch_sgd.lr", -0.1, "models.scratch_sgd.lr = -0.1: must be > 0"),
        ("models.scratch_sgd.lr", 0, "models.scratch_sgd.lr = 0: must be > 0"),
        ("models.scratch_adam.epochs", 0, "models.scratch_adam.epochs = 0: must be >= 1"),
        ("models.torch_adam.batch_size", -1, "models.torch_adam.batch_size = -1: must be >= 0"),
        ("models.scratch_adam.epochs", "ten", "models.scratch_adam.epochs = 'ten': must be of type integer"),
        ("network.hidden", 12.5, "network.hidden = 12.5: must be of type ['integer', 'array']"),
        ("models.scratch_sgd.impl", "jax", "models.scratch_sgd.impl = 'jax': must be one of scratch, torch"),
        ("models.scratch_sgd.optimizer", "lamb", "= 'lamb': must be one of sgd, adam, adamw, rmsprop, adagrad"),
        ("models.torch_adam.device", "tpu", "models.torch_adam.device = 'tpu': must be one of auto, cpu, cuda"),
        ("data.split", "random", "data.split = 'random': must be one of official, shuffle"),
        ("data.normalize", "zscore", "data.normalize = 'zscore': must be one of unit, standard"),
        ("seeds", [], "seeds = []: must hold at least 1 value"),
        ("seeds", [0, 1, 1], "seeds = [0, 1, 1]: values must be unique"),
        ("data.n_train", 59_000, "data.n_train + data.n_val = 59000 + 5000 = 64000: must be <= 60000"),
        ("data.n_test", 10_001, "data.n_test = 10001: must be <= 10000"),
        ("data.source", "kaggle", "data.source = 'kaggle': must be one of auto, idx, openml, wheel or a local"),
    ],
)
def test_bad_value_is_named_with_what_is_allowed(default_params_mapping, write_params, key, value, expected):
    path = write_params(_edited(default_params_mapping, key, value))
    with pytest.raises(MnistbenchError) as caught:
        load_params(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_shuffle_split_sizes_follow_test_fraction(default_params_mapping, write_params):
    mapping = _edited(default_params_mapping, "data.split", "shuffle")
    mapping["data"].update(test_fraction=0.2, n_train=50_000, n_val=6_000, n_test=14_000)
    assert load_params(write_params(mapping)).data.n_test == 14_000
    mapping["data"]["n_test"] = 14_001
    with pytest.raises(MnistbenchError, match="data.n_test = 14001: must be <= 14000"):
        load_params(write_params(mapping))


def test_unknown_key_is_named_with_the_allowed_keys(default_params_mapping, write_params):
    default_params_mapping["models"]["scratch_sgd"]["lrr"] = 0.1
    with pytest.raises(MnistbenchError, match=r"unknown key 'lrr' in models.scratch_sgd \(allowed: .*lr.*\)"):
        load_params(write_params(default_params_mapping))


def test_unknown_top_level_key(default_params_mapping, write_params):
    default_params_mapping["sedes"] = [0]
    with pytest.raises(MnistbenchError, match=r"unknown key 'sedes' in \(top level\)"):
        load_params(write_params(default_params_mapping))


def test_yaml_syntax_error_names_the_line(write_params):
    path = write_params("data:\n  source: auto\n  split: [official\nmodel: {hidden: 128}\n")
    with pytest.raises(MnistbenchError, match=r"line \d+, column \d+: YAML syntax error"):
        load_params(path)


def test_missing_params_file_is_an_error(tmp_path):
    with pytest.raises(MnistbenchError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_cli_exits_nonzero_with_one_line_and_writes_nothing(default_params_mapping, write_params, tmp_path):
    path = write_params(_edited(default_params_mapping, "models.scratch_sgd.lr", -1))
    result = subprocess.run(
        [sys.executable, "-m", "mnistbench", "--params", str(path), "--log", str(tmp_path / "x.log"), "prepare"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"mnistbench prepare: error: {path}: models.scratch_sgd.lr = -1: must be > 0"]
    assert not (tmp_path / "data").exists()


# Issue 15: each optimizer's keys and no others, ranges as torch.optim enforces them, schedules, deeper networks,
# and finite numbers everywhere. Each refusal is one line naming the key; test_refusals_write_nothing runs them
# all through `mnistbench train` and checks the workspace is left as it was.
RMSPROP = {"impl": "scratch", "optimizer": "rmsprop", "lr": 0.001, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0,
           "centered": False, "weight_decay": 0.0, "epochs": 15, "batch_size": 32, "schedule": {"name": "constant"}}
ADAGRAD = {"impl": "torch", "optimizer": "adagrad", "lr": 0.01, "eps": 1e-10, "weight_decay": 0.0,
           "initial_accumulator_value": 0.0, "epochs": 15, "batch_size": 32, "schedule": {"name": "constant"},
           "device": "cpu"}
ADAMW = {"impl": "scratch", "optimizer": "adamw", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
         "weight_decay": 0.01, "epochs": 15, "batch_size": 32, "schedule": {"name": "constant"}}
NEW_REFUSALS = {
    "adam-alpha": ("models.scratch_adam.alpha", 0.99, "models.scratch_adam.alpha: not a key of optimizer adam "
                   "(its keys: beta1, beta2, eps, weight_decay)"),
    "sgd-beta1": ("models.scratch_sgd.beta1", 0.9, "models.scratch_sgd.beta1: not a key of optimizer sgd (its keys: "
                  "momentum, nesterov, weight_decay)"),
    "adamw-momentum": ("models.scratch_sgd", {**ADAMW, "momentum": 0.9}, "models.scratch_sgd.momentum: not a key "
                       "of optimizer adamw (its keys: beta1, beta2, eps, weight_decay)"),
    "rmsprop-nesterov": ("models.scratch_sgd", {**RMSPROP, "nesterov": False}, "models.scratch_sgd.nesterov: not a "
                         "key of optimizer rmsprop (its keys: alpha, eps, momentum, centered, weight_decay)"),
    "adagrad-beta2": ("models.torch_adam", {**ADAGRAD, "beta2": 0.999}, "models.torch_adam.beta2: not a key of "
                      "optimizer adagrad (its keys: eps, weight_decay, initial_accumulator_value)"),
    "rmsprop-no-centered": ("models.scratch_sgd", {k: v for k, v in RMSPROP.items() if k != "centered"},
                            "models.scratch_sgd: 'centered' is a required property"),
    "adagrad-no-initial_accumulator_value": (
        "models.torch_adam", {k: v for k, v in ADAGRAD.items() if k != "initial_accumulator_value"},
        "models.torch_adam: 'initial_accumulator_value' is a required property"),
    "alpha-1": ("models.scratch_sgd", {**RMSPROP, "alpha": 1.0}, "models.scratch_sgd.alpha = 1.0: must be < 1"),
    "centered-not-bool": ("models.scratch_sgd", {**RMSPROP, "centered": 1},
                          "models.scratch_sgd.centered = 1: must be of type boolean"),
    "initial_accumulator_value-negative": ("models.torch_adam", {**ADAGRAD, "initial_accumulator_value": -0.1},
                                           "models.torch_adam.initial_accumulator_value = -0.1: must be >= 0"),
    "sgd-no-nesterov": ("models.scratch_sgd.nesterov", None, "models.scratch_sgd: 'nesterov' is a required property"),
    "adam-no-weight_decay": ("models.scratch_adam.weight_decay", None,
                             "models.scratch_adam: 'weight_decay' is a required property"),
    "beta1-1": ("models.scratch_adam.beta1", 1.0, "models.scratch_adam.beta1 = 1.0: must be < 1"),
    "beta2-negative": ("models.torch_adam.beta2", -0.1, "models.torch_adam.beta2 = -0.1: must be >= 0"),
    "momentum-negative": ("models.scratch_sgd.momentum", -0.5, "models.scratch_sgd.momentum = -0.5: must be >= 0"),
    "eps-0": ("models.scratch_adam.eps", 0.0, "models.scratch_adam.eps = 0.0: must be > 0"),
    "weight_decay-negative": ("models.scratch_sgd.weight_decay", -1e-4,
                              "models.scratch_sgd.weight_decay = -0.0001: must be >= 0"),
    "nesterov-not-bool": ("models.scratch_sgd.nesterov", "yes",
                          "models.scratch_sgd.nesterov = 'yes': must be of type boolean"),
    "nesterov-without-momentum": ("models.scratch_sgd.nesterov", True,
                                  "models.scratch_sgd.nesterov = true needs models.scratch_sgd.momentum > 0"),
    "no-schedule": ("models.scratch_sgd.schedule", None, "models.scratch_sgd: 'schedule' is a required property"),
    "schedule-name": ("models.scratch_sgd.schedule", {"name": "onecycle"},
                      "models.scratch_sgd.schedule.name = 'onecycle': must be one of constant, step, cosine"),
    "step-without-gamma": ("models.scratch_sgd.schedule", {"name": "step", "step_epochs": 5},
                           "models.scratch_sgd.schedule: 'gamma' is a required property"),
    "step-with-min_lr": ("models.scratch_sgd.schedule", {"name": "step", "step_epochs": 5, "gamma": 0.5, "min_lr": 0},
                         "models.scratch_sgd.schedule.min_lr: not a key of schedule step (its keys: step_epochs, "
                         "gamma)"),
    "constant-with-gamma": ("models.scratch_sgd.schedule", {"name": "constant", "gamma": 0.5},
                            "models.scratch_sgd.schedule.gamma: not a key of schedule constant (its keys: none)"),
    "step_epochs-0": ("models.scratch_sgd.schedule", {"name": "step", "step_epochs": 0, "gamma": 0.5},
                      "models.scratch_sgd.schedule.step_epochs = 0: must be >= 1"),
    "gamma-0": ("models.scratch_sgd.schedule", {"name": "step", "step_epochs": 1, "gamma": 0},
                "models.scratch_sgd.schedule.gamma = 0: must be > 0"),
    "min_lr-negative": ("models.scratch_sgd.schedule", {"name": "cosine", "warmup_epochs": 0, "min_lr": -1e-3},
                        "models.scratch_sgd.schedule.min_lr = -0.001: must be >= 0"),
    "warmup-all-epochs": ("models.scratch_sgd.schedule", {"name": "cosine", "warmup_epochs": 15, "min_lr": 0.0},
                          "models.scratch_sgd.schedule.warmup_epochs = 15: must be < models.scratch_sgd.epochs = 15"),
    "schedule-unknown-key": ("models.scratch_sgd.schedule", {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0,
                                                              "T_max": 3},
                             "unknown key 'T_max' in models.scratch_sgd.schedule"),
    "activation": ("network.activation", "gelu", "network.activation = 'gelu': must be one of relu, tanh, sigmoid"),
    "no-activation": ("network.activation", None, "network: 'activation' is a required property"),
    "hidden-empty": ("network.hidden", [], "network.hidden = []: must hold at least 1 value"),
    "hidden-zero-width": ("network.hidden", [128, 0], "network.hidden.1 = 0: must be >= 1"),
    "lr-nan": ("models.scratch_sgd.lr", math.nan, "models.scratch_sgd.lr = nan: must be a finite number"),
    "lr-inf": ("models.scratch_adam.lr", math.inf, "models.scratch_adam.lr = inf: must be a finite number"),
    "eps-minus-inf": ("models.torch_adam.eps", -math.inf, "models.torch_adam.eps = -inf: must be a finite number"),
    "weight_decay-nan": ("models.scratch_sgd.weight_decay", math.nan,
                         "models.scratch_sgd.weight_decay = nan: must be a finite number"),
    "min_lr-inf": ("models.scratch_sgd.schedule", {"name": "cosine", "warmup_epochs": 0, "min_lr": math.inf},
                   "models.scratch_sgd.schedule.min_lr = inf: must be a finite number"),
    "test_fraction-nan": ("data.test_fraction", math.nan, "data.test_fraction = nan: must be a finite number"),
    "target_accuracy-nan": ("evaluate.target_accuracy", math.nan,
                            "evaluate.target_accuracy = nan: must be a finite number"),
    "seed-inf": ("seeds", [0, math.inf], "seeds.1 = inf: must be a finite number"),
    "hidden-nan": ("network.hidden", [128, math.nan], "network.hidden.1 = nan: must be a finite number"),
}


def _refused_mapping(mapping: dict, case: str) -> dict:
    """The default params with one case's edit (None deletes the key)."""
    key, value, _ = NEW_REFUSALS[case]
    edited = _edited(mapping, key, value)
    if value is None:
        *parents, last = key.split(".")
        node = edited
        for part in parents:
            node = node[part]
        del node[last]
    return edited


def _expected(case: str) -> str:
    return NEW_REFUSALS[case][2]


@pytest.mark.parametrize("case", NEW_REFUSALS)
def test_each_new_refusal_is_one_line_naming_the_key(default_params_mapping, write_params, case):
    path = write_params(_refused_mapping(default_params_mapping, case))
    with pytest.raises(MnistbenchError) as caught:
        load_params(path)
    message = str(caught.value)
    assert _expected(case) in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["lr: .nan", "lr: .NaN", "lr: .inf", "lr: -.Inf", "lr: +.inf"])
def test_yaml_non_finite_spellings_are_refused(default_params_mapping, write_params, text):
    yaml_text = write_params(default_params_mapping).read_text(encoding="utf-8")
    yaml_text = yaml_text.replace("lr: 0.1", text, 1)
    assert text in yaml_text
    with pytest.raises(MnistbenchError, match=r"models\.scratch_sgd\.lr = [-+]?(nan|inf): must be a finite number"):
        load_params(write_params(yaml_text))


REFUSE_ALL = """
import contextlib, io, json, os, sys
from pathlib import Path
from mnistbench.cli import main
results = {}
for workspace in sorted(Path(sys.argv[1]).iterdir()):
    os.chdir(workspace)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["--params", "params.yaml", "--log", os.path.join(sys.argv[2], workspace.name + ".log"),
                     "train", "--model", "scratch_sgd", "--seed", "0"])
    results[workspace.name] = {"code": code, "stderr": stderr.getvalue(),
                               "files": sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*"))}
print(json.dumps(results))
"""


def test_refusals_write_nothing(default_params_mapping, tmp_path):
    """`mnistbench train` on each refused params file: exit 2, one line naming the key, the workspace unchanged."""
    import json

    import yaml

    workspaces, logs = tmp_path / "workspaces", tmp_path / "logs"
    logs.mkdir()
    for case in NEW_REFUSALS:
        workspace = workspaces / case
        workspace.mkdir(parents=True)
        text = yaml.safe_dump(_refused_mapping(default_params_mapping, case), sort_keys=False)
        (workspace / "params.yaml").write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", REFUSE_ALL, str(workspaces), str(logs)], capture_output=True,
                            text=True, timeout=300, check=True)
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(results) == set(NEW_REFUSALS)
    for case, outcome in results.items():
        assert outcome["code"] == 2, case
        [line] = outcome["stderr"].splitlines()
        assert line.startswith("mnistbench train: error: params.yaml: ") and _expected(case) in line, (case, line)
        assert outcome["files"] == ["params.yaml"], case
        assert (workspaces / case / "params.yaml").read_text(encoding="utf-8") == yaml.safe_dump(
            _refused_mapping(default_params_mapping, case), sort_keys=False)


def test_every_optimizer_and_schedule_of_the_interface_is_accepted(default_params_mapping, write_params):
    from mnistbench.params import OPTIMIZER_KEYS

    values = {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
              "alpha": 0.99, "centered": True, "initial_accumulator_value": 0.1}
    schedules = [{"name": "constant"}, {"name": "step", "step_epochs": 5, "gamma": 0.5},
                 {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}]
    models = {}
    for optimizer, keys in OPTIMIZER_KEYS.items():
        for impl in ("scratch", "torch"):
            for index, schedule in enumerate(schedules):
                device = {"device": "cpu"} if impl == "torch" else {}
                models[f"{impl}_{optimizer}_{index}"] = {
                    "impl": impl, "optimizer": optimizer, "lr": 0.01, **{key: values[key] for key in keys},
                    "epochs": 3, "batch_size": 64, "schedule": schedule, **device}
    default_params_mapping["models"] = models
    default_params_mapping["network"].update(hidden=[256, 128], activation="tanh")
    params = load_params(write_params(default_params_mapping))
    assert params.network.hidden == (256, 128) and params.network.activation == "tanh"
    assert params.models["torch_rmsprop_2"].centered is True
    assert params.models["scratch_adagrad_1"].schedule == {"name": "step", "step_epochs": 5, "gamma": 0.5}
    assert params.models["scratch_sgd_0"].alpha is None


FOREIGN_KEY_CASES = [case for case, (_, _, expected) in NEW_REFUSALS.items() if "not a key of" in expected]


@pytest.mark.parametrize("case", FOREIGN_KEY_CASES)
def test_the_schema_alone_refuses_each_foreign_key(default_params_mapping, case):
    """The packaged schema (workflow/schemas links to it) says what OPTIMIZER_KEYS and SCHEDULE_KEYS say."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    assert not list(validator.iter_errors(default_params_mapping))
    assert list(validator.iter_errors(_refused_mapping(default_params_mapping, case)))
