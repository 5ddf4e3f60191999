"""`mnistbench sweep` over any numeric key: names that stay valid wildcards, keys inside `schedule`, and one-line
refusals for keys the base lacks, keys that are not numbers and values that are not finite numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mnistbench import cli
from mnistbench.errors import MnistbenchError
from mnistbench.params import load_params
from mnistbench.sweep import parse_setting, run_sweep, sweep_entries, sweepable_keys

REPO_ROOT = Path(__file__).resolve().parents[1]
WILDCARD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SGD = {"impl": "scratch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
       "epochs": 4, "batch_size": 32, "schedule": {"name": "constant"}}
ADAMW = {"impl": "scratch", "optimizer": "adamw", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
         "weight_decay": 0.01, "epochs": 4, "batch_size": 128,
         "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}}


def entries(base: dict, *settings: str) -> dict[str, dict]:
    return sweep_entries("base", {"base": base}, [parse_setting(setting) for setting in settings])


def test_weight_decay_sweep_names_zero_and_small_values_as_valid_wildcards():
    added = entries(ADAMW, "weight_decay=0,1e-4,1e-3")
    assert list(added) == ["base__weight_decay_0", "base__weight_decay_0p0001", "base__weight_decay_0p001"]
    assert [entry["weight_decay"] for entry in added.values()] == [0, 1e-4, 1e-3]
    assert all(entry["family"] == "base" and entry["lr"] == 0.001 for entry in added.values())


def test_negative_and_tiny_values_give_valid_wildcard_names():
    added = entries({**SGD, "lr": 0.5}, "lr=-0.5,1e-5,2e+20")
    assert list(added) == ["base__lr_m0p5", "base__lr_1em05", "base__lr_2e20"]
    assert all(WILDCARD.fullmatch(name) for name in added)


def test_a_key_inside_the_schedule_is_swept_with_a_dotted_name_and_the_base_is_untouched():
    base = {**ADAMW, "schedule": dict(ADAMW["schedule"])}
    added = entries(base, "schedule.warmup_epochs=0,1,2")
    assert list(added) == ["base__schedule_warmup_epochs_0", "base__schedule_warmup_epochs_2"]
    assert added["base__schedule_warmup_epochs_0"]["schedule"] == {"name": "cosine", "warmup_epochs": 0,
                                                                   "min_lr": 0.0}
    assert base["schedule"] == ADAMW["schedule"]
    assert all(WILDCARD.fullmatch(name) for name in added)


def test_two_keys_make_a_grid_without_the_base_combination():
    added = entries(SGD, "momentum=0,0.9", "lr=0.1,0.3")
    assert list(added) == ["base__momentum_0__lr_0p3", "base__momentum_0p9__lr_0p1", "base__momentum_0p9__lr_0p3"]


def test_sweepable_keys_are_the_numbers_of_the_entry_and_of_its_schedule():
    assert sweepable_keys(ADAMW) == ["lr", "beta1", "beta2", "eps", "weight_decay", "epochs", "batch_size",
                                     "schedule.warmup_epochs", "schedule.min_lr"]
    assert sweepable_keys(SGD) == ["lr", "momentum", "weight_decay", "epochs", "batch_size"]


@pytest.mark.parametrize(("base", "setting", "message"), [
    (SGD, "beta1=0.5,0.9", r"--set beta1: models.base \(optimizer sgd, schedule constant\) has no key beta1; "
                           r"the keys it can sweep: lr, momentum, weight_decay, epochs, batch_size$"),
    (SGD, "schedule.warmup_epochs=0,1", r"has no key schedule.warmup_epochs"),
    (SGD, "optimizer=sgd,adam", r"has optimizer: 'sgd', not a number"),
    (SGD, "nesterov=true,false", r"has nesterov: False, not a number"),
    (ADAMW, "schedule.name=constant", r"has schedule.name: 'cosine', not a number"),
    (SGD, "momentum=0.9,fast", r"--set momentum: 'fast' is not a finite number"),
    (SGD, "momentum=true", r"--set momentum: True is not a finite number"),
    (SGD, "lr=.nan", r"--set lr: nan is not a finite number"),
    (SGD, "lr=inf", r"--set lr: inf is not a finite number"),
    (SGD, "lr=0.3,0.3000001", r"same entry name base__lr_0p3 \(a value repeated"),
    (SGD, "lr=0.3,0.3", r"same entry name base__lr_0p3 "),
])
def test_a_key_or_value_that_cannot_be_swept_is_one_line(base, setting, message):
    with pytest.raises(MnistbenchError, match=message) as error:
        entries(base, setting)
    assert "\n" not in str(error.value)


def test_momentum_sweep_of_the_default_sgd_entry_is_valid_params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert run_sweep(path, "scratch_sgd", ["momentum=0,0.5,0.9"]) == ["scratch_sgd__momentum_0p5",
                                                                       "scratch_sgd__momentum_0p9"]
    params = load_params(path)
    assert params.families()["scratch_sgd"] == ["scratch_sgd", "scratch_sgd__momentum_0p5",
                                                "scratch_sgd__momentum_0p9"]
    assert params.mapping["models"]["scratch_sgd__momentum_0p9"]["momentum"] == 0.9


def test_a_refused_key_through_the_cli_exits_2_with_one_line_and_changes_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    original = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    Path("params.yaml").write_text(original, encoding="utf-8")
    assert cli.main(["--params", "params.yaml", "sweep", "scratch_sgd", "--set", "beta1=0.5,0.9"]) == 2
    error = capfd.readouterr().err
    assert "has no key beta1" in error and "Traceback" not in error and error.strip().count("\n") == 0
    assert Path("params.yaml").read_text(encoding="utf-8") == original


def test_weight_decay_and_schedule_sweeps_of_the_default_adam_entry_are_valid_params(tmp_path):
    path = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("schedule: {name: constant}}\n  torch_adam",
                                 "schedule: {name: cosine, warmup_epochs: 1, min_lr: 0.0}}\n  torch_adam"),
                    encoding="utf-8")
    assert run_sweep(path, "scratch_adam", ["weight_decay=0,1e-4,1e-3"]) == ["scratch_adam__weight_decay_0p0001",
                                                                              "scratch_adam__weight_decay_0p001"]
    assert run_sweep(path, "scratch_sgd", ["lr=0.1,0.3"]) == ["scratch_sgd__lr_0p3"]
    with pytest.raises(MnistbenchError, match=r"models.scratch_sgd \(optimizer sgd, schedule constant\) has no key "
                                              r"schedule.warmup_epochs"):
        run_sweep(path, "scratch_sgd", ["schedule.warmup_epochs=0,2"])
    assert run_sweep(path, "scratch_adam", ["schedule.warmup_epochs=0,2"]) == [
        "scratch_adam__schedule_warmup_epochs_0", "scratch_adam__schedule_warmup_epochs_2"]
    models = load_params(path).mapping["models"]
    assert models["scratch_adam__schedule_warmup_epochs_2"]["schedule"] == {"name": "cosine", "warmup_epochs": 2,
                                                                           "min_lr": 0.0}
    assert "scratch_adam__weight_decay_0p001" not in models  # the new sweep of the base replaced its old block
