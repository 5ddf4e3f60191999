"""Load params.yaml, validate it against workflow/schemas/params.schema.yaml, and give typed access.

Every stage calls `load_params` before doing any work, so a bad value stops the pipeline with one line that
names the key, the value and what is allowed, and nothing is written.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mnistbench.errors import MnistbenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"

# Canonical MNIST sizes (see data-sources.md): the first 60,000 rows are the official training set.
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
class ModelParams:
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
    momentum: float
    beta1: float
    beta2: float
    eps: float
    epochs: int
    batch_size: int  # 0 means full batch
    device: str
    family: str | None = None


@dataclass(frozen=True)
class EvaluateParams:
    worst_mistakes: int
    throughput_repeats: int
    target_accuracy: float  # validation accuracy whose first epoch gives the time-to-target figure


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    seeds: tuple[int, ...]
    models: dict[str, RunParams]
    evaluate: EvaluateParams
    raw: dict[str, Any]  # the validated mapping with defaults filled in, as recorded with every result
    path: Path

    def run(self, name: str) -> RunParams:
        if name not in self.models:
            raise MnistbenchError(f"unknown model {name!r}: params {self.path} defines {sorted(self.models)}")
        return self.models[name]

    def families(self) -> dict[str, list[str]]:
        """Family name -> its member models, both in params order."""
        return group_families(self.raw["models"])

    def check_seed(self, seed: int) -> None:
        if seed not in self.seeds:
            raise MnistbenchError(f"seed {seed} is not in seeds {list(self.seeds)} of {self.path}")


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, validate and type a params file; raise MnistbenchError with a one-line message if it is bad."""
    path = Path(path)
    mapping = _read_yaml(path)
    validate_mapping(mapping, where=str(path))
    filled = _with_defaults(mapping, load_schema())
    return _typed(filled, path)


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
        return f"unknown key {unknown[0]!r} in {key} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        return f"{key}: {error.message}"
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
    n_test = math.ceil(data.get("test_fraction", 0.2) * MNIST_ROWS)
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


def _with_defaults(mapping: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    filled = copy.deepcopy(mapping)
    props = schema["properties"]
    run_props = schema["$defs"]["run"]["properties"]
    filled.setdefault("evaluate", {})
    for section in ("data", "model", "evaluate"):
        _fill(filled[section], props[section]["properties"])
    for run in filled["models"].values():
        _fill(run, run_props)
    return filled


def _fill(section: dict[str, Any], properties: dict[str, Any]) -> None:
    for key, spec in properties.items():
        if "default" in spec:
            section.setdefault(key, spec["default"])


def _typed(filled: dict[str, Any], path: Path) -> Params:
    return Params(
        data=DataParams(**filled["data"]),
        model=ModelParams(**filled["model"]),
        seeds=tuple(filled["seeds"]),
        models={name: RunParams(name=name, **{"family": name, **run}) for name, run in filled["models"].items()},
        evaluate=EvaluateParams(**filled["evaluate"]),
        raw=filled,
        path=path,
    )
