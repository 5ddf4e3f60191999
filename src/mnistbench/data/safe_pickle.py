"""Load a pickle of NumPy arrays without letting it run code.

A pickle names the callables that rebuild its objects; a malicious one names `os.system` and the like. This
unpickler resolves only the names NumPy uses to rebuild arrays and refuses every other one before it is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

try:  # NumPy 2 moved the implementation to numpy._core; pickles written by NumPy 1 still name numpy.core.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class knows only NumPy's array-reconstruction names (ALLOWED_GLOBALS)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only NumPy array reconstruction is allowed"
            ) from None


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle `data` (which may come from Python 2: strings decoded as latin-1) allowing only NumPy arrays."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
