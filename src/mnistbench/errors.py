"""The one exception type users see: a one-line message, printed without a traceback by the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class MnistbenchError(Exception):
    """A problem the user can fix (bad params, missing input, unreachable data); the message says what."""


class DamagedFileError(MnistbenchError):
    """A file that is there but does not read back (bad CRC, truncated, not JSON, not the recorded checksum).

    `path` and `problem` say which file and what is wrong. Whoever reads the file cannot know how to get it
    back; the layer that knows the pipeline (the CLI, `mnistbench.stages`) adds that with `with_recovery`.
    `summary` replaces the default wording "PATH is damaged (PROBLEM)" where a check phrases it better.
    """

    def __init__(self, path: str | Path, problem: str, recovery: str | None = None, summary: str | None = None):
        super().__init__(path, problem, recovery, summary)
        self.path = Path(path)
        self.problem = problem
        self.recovery = recovery
        self.summary = summary or f"{path} is damaged ({problem})"

    def __str__(self) -> str:
        return f"{self.summary}; {self.recovery}" if self.recovery else self.summary

    def with_recovery(self, recovery: str) -> DamagedFileError:
        """The same error, its message ending with how to get the file back."""
        return DamagedFileError(self.path, self.problem, recovery, self.summary)


def one_of(choices: Mapping[str, T], value: str, key: str) -> T:
    """choices[value]: the one lookup behind every "must be one of" (impl, optimizer, device, normalize, ...).

    key names the params entry for the message, e.g. "models.scratch_sgd.optimizer".
    """
    if value not in choices:
        raise MnistbenchError(f"{key} = {value!r}: must be one of {', '.join(choices)}")
    return choices[value]
