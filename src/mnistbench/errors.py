"""The one exception type users see: a one-line message, printed without a traceback by the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class MnistbenchError(Exception):
    """A problem the user can fix (bad params, missing input, unreachable data); the message says what."""


def one_of(choices: Mapping[str, T], value: str, key: str) -> T:
    """choices[value]: the one lookup behind every "must be one of" (impl, optimizer, device, normalize, ...).

    key names the params entry for the message, e.g. "models.scratch_sgd.optimizer".
    """
    if value not in choices:
        raise MnistbenchError(f"{key} = {value!r}: must be one of {', '.join(choices)}")
    return choices[value]
