"""Load params.yaml, validate it against the packaged schema (params.schema.yaml), and give typed access.

Every stage calls `load_params` before doing any work, so a bad value stops the pipeline with one line that
names the key, the value and what is allowed, and nothing is written. The schema only validates: it holds no
defaults, so every value a stage uses stands in params.yaml, where both orchestrators track it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    """The architecture: a 784-hidden-10 MLP."""

    hidden: int
    init: str
    dtype: str


@dataclass(frozen=True)
class RunParams:
    """One entry of `models`: how one model is trained (for every seed).

    family: the recipe this entry is one hyperparameter setting of; an entry without `family` is its own family
    (load_params fills in the entry's name).
    """

    name: str
    impl: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int  # 0 means full batch
    momentum: float | None = None  # sgd only
    beta1: float | None = None  # adam only (beta1, beta2, eps)
    beta2: float | None = None
    eps: float | None = None
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
    """Schema check, then the checks a schema cannot express (sizes against what MNIST provides)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(mapping), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if errors:
        raise MnistbenchError(f"{where}: {describe_schema_error(errors[0])}")
    _check_sizes(mapping["data"], where)
    _check_source(mapping["data"]["source"], where)
    _check_selection_data(mapping, where)


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


def _typed(mapping: dict[str, Any], path: Path) -> Params:
    return Params(
        data=DataParams(**mapping["data"]),
        network=NetworkParams(**mapping["network"]),
        seeds=tuple(mapping["seeds"]),
        models={name: RunParams(name=name, **{"family": name, **run}) for name, run in mapping["models"].items()},
        evaluate=EvaluateParams(**mapping["evaluate"]),
        mapping=mapping,
        path=path,
    )
