"""Load params.yaml, validate it against the packaged schema (params.schema.yaml), and give typed access.

Every stage calls `load_params` before doing any work, so a bad value stops the pipeline with one line that
names the key, the value and what is allowed, and nothing is written. The schema only validates: it holds no
defaults, so every value a stage uses stands in params.yaml, where both orchestrators track it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mnistbench.errors import MnistbenchError

# Canonical MNIST sizes: the first 60,000 rows are the official training set, the last 10,000 the test set.
MNIST_ROWS = 70_000
MNIST_OFFICIAL_TRAIN_ROWS = 60_000


@dataclass(frozen=True)
class DataParams:
    source: str
    split: str
    test_fraction: float
    split_seed: int
    n_train: int
    n_val: int
    n_test: int
    normalize: str


@dataclass(frozen=True)
class NetworkParams:
    """The architecture: a 784-h1-...-hk-10 MLP with `activation` between its dense layers.

    hidden: the hidden widths, one per hidden layer (`hidden: 128` in the file gives (128,)).
    """

    hidden: tuple[int, ...]
    init: str
    dtype: str
    activation: str = "relu"


# The keys each optimizer reads, besides lr: required for it, refused for the others (the schema says the same).
OPTIMIZER_KEYS = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("alpha", "eps", "momentum", "centered", "weight_decay"),
    "adagrad": ("eps", "weight_decay", "initial_accumulator_value"),
}
# The keys each schedule reads, besides its name.
SCHEDULE_KEYS = {"constant": (), "step": ("step_epochs", "gamma"), "cosine": ("warmup_epochs", "min_lr")}
CONSTANT_SCHEDULE = {"name": "constant"}


@dataclass(frozen=True)
class RunParams:
    """One entry of `models`: how one model is trained (for every seed).

    family: the recipe this entry is one hyperparameter setting of; an entry without `family` is its own family
    (load_params fills in the entry's name). An optimizer's keys (OPTIMIZER_KEYS) are None for the others.
    schedule: the entry's `schedule:` mapping as written, e.g. {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}
    (mnistbench.scratch.schedules states each formula); every params file states it, the constant default here
    only serves runs built in code.
    """

    name: str
    impl: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int  # 0 means full batch
    momentum: float | None = None  # sgd, rmsprop
    beta1: float | None = None  # adam, adamw (beta1, beta2)
    beta2: float | None = None
    eps: float | None = None  # adam, adamw, rmsprop, adagrad
    weight_decay: float | None = None  # every optimizer (decoupled in adamw, L2 in the others)
    nesterov: bool | None = None  # sgd
    alpha: float | None = None  # rmsprop (alpha, centered)
    centered: bool | None = None
    initial_accumulator_value: float | None = None  # adagrad
    schedule: Mapping[str, Any] = field(default_factory=lambda: dict(CONSTANT_SCHEDULE))
    device: str | None = None  # impl torch only
    family: str | None = None


@dataclass(frozen=True)
class EvaluateParams:
    worst_mistakes: int
    throughput_repeats: int
    target_accuracy: float  # validation accuracy whose first epoch gives the time-to-target figure


@dataclass(frozen=True)
class Params:
    data: DataParams
    network: NetworkParams
    seeds: tuple[int, ...]
    models: dict[str, RunParams]
    evaluate: EvaluateParams
    mapping: dict[str, Any]  # the validated params file as read, recorded with every result
    path: Path

    def run(self, name: str) -> RunParams:
        if name not in self.models:
            raise MnistbenchError(f"unknown model {name!r}: params {self.path} defines {sorted(self.models)}")
        return self.models[name]

    def families(self) -> dict[str, list[str]]:
        """Family name -> its member models, both in params order."""
        return group_families(self.mapping["models"])

    def check_seed(self, seed: int) -> None:
        if seed not in self.seeds:
            raise MnistbenchError(f"seed {seed} is not in seeds {list(self.seeds)} of {self.path}")


def schema_text() -> str:
    """The params schema shipped inside the package (mnistbench/params.schema.yaml)."""
    return resources.files("mnistbench").joinpath("params.schema.yaml").read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(schema_text())


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, validate and type a params file; raise MnistbenchError with a one-line message if it is bad."""
    path = Path(path)
    mapping = _read_yaml(path)
    validate_mapping(mapping, where=str(path))
    return _typed(mapping, path)


def validate_mapping(mapping: Any, where: str = "params") -> None:
    """Finite numbers, each optimizer's and schedule's own keys, the schema, then the checks a schema cannot
    express (sizes against what MNIST provides, values that depend on each other)."""
    _check_finite(mapping, where)
    _check_foreign_keys(mapping, where)
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(mapping), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if errors:
        raise MnistbenchError(f"{where}: {describe_schema_error(errors[0])}")
    for name, run in mapping["models"].items():
        _check_run(name, run, where)
    _check_sizes(mapping["data"], where)
    _check_source(mapping["data"]["source"], where)
    _check_selection_data(mapping, where)


def _check_finite(node: Any, where: str, key: str = "") -> None:
    """Every number anywhere in params is finite: YAML's .nan, .inf and -.inf are refused, the key named."""
    if isinstance(node, float) and not math.isfinite(node):
        raise MnistbenchError(f"{where}: {key or '(top level)'} = {node!r}: must be a finite number "
                              "(NaN and infinity are refused)")
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for child_key, child in children:
        _check_finite(child, where, f"{key}.{child_key}" if key else str(child_key))


def _check_foreign_keys(mapping: Any, where: str) -> None:
    """A key of another optimizer (or schedule) is named as such, with the keys this one reads."""
    models = mapping.get("models") if isinstance(mapping, dict) else None
    runs = {name: run for name, run in models.items() if isinstance(run, dict)} if isinstance(models, dict) else {}
    for name, run in runs.items():
        _refuse_foreign(run, run.get("optimizer"), OPTIMIZER_KEYS, "optimizer", f"models.{name}", where)
        schedule = run.get("schedule")
        if isinstance(schedule, dict):
            _refuse_foreign(schedule, schedule.get("name"), SCHEDULE_KEYS, "schedule", f"models.{name}.schedule", where)


def _refuse_foreign(entry: dict[str, Any], chosen: Any, keys_of: dict[str, tuple[str, ...]], kind: str, key: str,
                    where: str) -> None:
    """`chosen` picks one row of keys_of (an unknown choice is left to the schema): no other row's key may stand
    in entry."""
    if not isinstance(chosen, str) or chosen not in keys_of:
        return
    foreign = {other for keys in keys_of.values() for other in keys} - set(keys_of[chosen])
    present = sorted(foreign & set(entry))
    if present:
        own = ", ".join(keys_of[chosen]) or "none"
        raise MnistbenchError(f"{where}: {key}.{present[0]}: not a key of {kind} {chosen} (its keys: {own}); remove it")


def _check_run(name: str, run: dict[str, Any], where: str) -> None:
    """What the schema cannot say: Nesterov needs momentum, warmup must leave epochs to decay over."""
    if run.get("nesterov") and run["momentum"] <= 0:
        raise MnistbenchError(f"{where}: models.{name}.nesterov = true needs models.{name}.momentum > 0 "
                              f"(it is {run['momentum']!r}), as torch.optim.SGD does; set nesterov: false or a "
                              "momentum")
    schedule = run["schedule"]
    if schedule["name"] == "cosine" and schedule["warmup_epochs"] >= run["epochs"]:
        raise MnistbenchError(f"{where}: models.{name}.schedule.warmup_epochs = {schedule['warmup_epochs']}: must be "
                              f"< models.{name}.epochs = {run['epochs']} (warmup leaves the decay no epoch)")


def group_families(models: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Family name -> member model names, in params order; an entry without `family` is its own family."""
    families: dict[str, list[str]] = {}
    for name, run in models.items():
        families.setdefault(run.get("family", name), []).append(name)
    return families


def _check_selection_data(mapping: dict[str, Any], where: str) -> None:
    """A family of several members is tuned on the validation rows: without them there is nothing to select on."""
    if mapping["data"]["n_val"] > 0:
        return
    tuned = {family: members for family, members in group_families(mapping["models"]).items() if len(members) > 1}
    if tuned:
        family, members = next(iter(tuned.items()))
        raise MnistbenchError(
            f"{where}: data.n_val = 0 but family {family!r} has {len(members)} members: selecting one needs "
            "validation rows (the test rows never take part in selection); set data.n_val > 0"
        )


NAMED_SOURCES = ("auto", "idx", "openml", "wheel")
# Top-level keys of older params files: the message names the new key.
RENAMED = {"model": "network"}


def _check_source(source: str, where: str) -> None:
    """A source is one of the named ones, a local .npz file or an existing IDX folder (relative to the working dir).

    Whether an .npz file exists is left to the download stage, so that later stages still run after it is gone.
    """
    if source not in NAMED_SOURCES and not source.endswith(".npz") and not Path(source).expanduser().is_dir():
        raise MnistbenchError(
            f"{where}: data.source = {source!r}: must be one of {', '.join(NAMED_SOURCES)} "
            "or a local .npz file or an existing IDX folder"
        )


def describe_schema_error(error: jsonschema.ValidationError) -> str:
    """One line: the dotted key, the offending value and what is allowed."""
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        message = f"unknown key {unknown[0]!r} in {key} (allowed: {', '.join(allowed)})"
        if not error.absolute_path and unknown[0] in RENAMED:
            message += f"; it is now called {RENAMED[unknown[0]]!r}"
        return message
    if error.validator == "required":
        return f"{key}: {error.message} (params.yaml states every value; the schema fills in none)"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{key} = {error.instance!r}: must be one of {allowed}"
    if error.validator == "uniqueItems":
        return f"{key} = {error.instance!r}: values must be unique (a seed appears twice)"
    if error.validator == "minItems":
        return f"{key} = {error.instance!r}: must hold at least {error.validator_value} value(s)"
    if error.validator == "propertyNames":
        return f"{key}: model name {error.instance!r} must start with a letter and use only letters, digits, _"
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if error.validator in bounds:
        return f"{key} = {error.instance!r}: must be {bounds[error.validator]} {error.validator_value}"
    if error.validator == "type":
        return f"{key} = {error.instance!r}: must be of type {error.validator_value}"
    return f"{key} = {error.instance!r}: {error.message}"


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise MnistbenchError(f"params file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MnistbenchError(f"{path}:{line}: YAML syntax error: {problem}") from None


def training_pool_size(data: dict[str, Any]) -> tuple[int, int]:
    """(training portion, test portion) of canonical MNIST under the chosen split."""
    if data["split"] == "official":
        return MNIST_OFFICIAL_TRAIN_ROWS, MNIST_ROWS - MNIST_OFFICIAL_TRAIN_ROWS
    # sklearn.model_selection.train_test_split rounds the test share up.
    n_test = math.ceil(data["test_fraction"] * MNIST_ROWS)
    return MNIST_ROWS - n_test, n_test


def _check_sizes(data: dict[str, Any], where: str) -> None:
    train_pool, test_pool = training_pool_size(data)
    wanted = data["n_train"] + data["n_val"]
    if wanted > train_pool:
        raise MnistbenchError(
            f"{where}: data.n_train + data.n_val = {data['n_train']} + {data['n_val']} = {wanted}: "
            f"must be <= {train_pool}, the training rows of split {data['split']!r}"
        )
    if data["n_test"] > test_pool:
        raise MnistbenchError(
            f"{where}: data.n_test = {data['n_test']}: must be <= {test_pool}, "
            f"the test rows of split {data['split']!r}"
        )


def _network(network: dict[str, Any]) -> NetworkParams:
    hidden = network["hidden"]
    return NetworkParams(**{**network, "hidden": (hidden,) if isinstance(hidden, int) else tuple(hidden)})


def _run(name: str, run: dict[str, Any]) -> RunParams:
    return RunParams(name=name, **{"family": name, **run, "schedule": dict(run["schedule"])})


def _typed(mapping: dict[str, Any], path: Path) -> Params:
    return Params(
        data=DataParams(**mapping["data"]),
        network=_network(mapping["network"]),
        seeds=tuple(mapping["seeds"]),
        models={name: _run(name, run) for name, run in mapping["models"].items()},
        evaluate=EvaluateParams(**mapping["evaluate"]),
        mapping=mapping,
        path=path,
    )
