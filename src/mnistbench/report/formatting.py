"""How numbers are written in the report: one function per kind of quantity, "n/a" for a missing value."""

from __future__ import annotations

import math
from typing import Any

MISSING = "n/a"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals: 0.97123 -> "97.12%"."""
    return MISSING if _missing(value) else f"{100 * value:.2f}%"


def points(value: float | None, signed: bool = False) -> str:
    """A fraction as percentage points: 0.0012 -> "0.12" (or "+0.12" when signed)."""
    return MISSING if _missing(value) else f"{100 * value:{'+' if signed else ''}.2f}"


def interval(bounds: list[float] | None, signed: bool = False) -> str:
    """A [low, high] interval of fractions in percentage points: "[96.80, 97.40]"."""
    if bounds is None:
        return MISSING
    low, high = bounds
    return f"[{points(low, signed)}, {points(high, signed)}]"


def loss(value: float | None) -> str:
    return MISSING if _missing(value) else f"{value:.4f}"


def seconds(value: float | None) -> str:
    """3 significant digits below 100 s, whole seconds above: "0.0123 s", "12.3 s", "1234 s", the unit joined to the
    number by a no-break space (a narrow table wraps between values, never inside one)."""
    if _missing(value):
        return MISSING
    return f"{value:.0f}\u00a0s" if value >= 100 else f"{value:.3g}\u00a0s"


def rate(value: float | None) -> str:
    """Images per second with thousands separators: "45,210/s"."""
    return MISSING if _missing(value) else f"{value:,.0f}/s"


def ratio(value: float | None) -> str:
    """A time relative to the fastest: 1.0 -> "1.00x (fastest)", 3.2 -> "3.20x"."""
    if _missing(value):
        return MISSING
    return "1.00x (fastest)" if math.isclose(value, 1.0) else f"{value:.2f}x"
