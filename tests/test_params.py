"""params.yaml validation: every bad value stops with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
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
