"""Labelled inputs are read by name, positional ones by position.

One rule for every function that takes per-asset values: a ``dict`` or a pandas Series (anything
with an ``index`` and one dimension) is *labelled*, and when the function knows the asset names
(from a labelled covariance, ``assets=[...]``, or another labelled argument) its values are put
in that order, by name. Reading them by position instead is the silent error this module exists
to prevent: market caps ``{"B": 1, "A": 3}`` against a covariance labelled ``[A, B]`` must weigh
A three times B, not the other way round. Labels that do not match the asset names exactly are an
error that names the missing and the extra ones (a typo must not become a zero or a NaN).

Arrays and lists are positional and stay so. A Series whose names cannot be checked (the function
knows no asset names) is read in its own order, as an array would be; a ``dict`` then is an error,
because its order says nothing about which asset is which.

pandas is never imported here: objects are recognised by their attributes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import QuantkitError

__all__ = ["align_frame", "align_matrix", "align_vector", "check_labels", "labels_of",
           "matrix_labels", "reorder"]

FloatArray = npt.NDArray[np.float64]
Labels = list[Hashable]


def _is_series(x: Any) -> bool:
    return (hasattr(x, "index") and hasattr(x, "to_numpy") and getattr(x, "ndim", 0) == 1
            and not isinstance(x, np.ndarray))


def labels_of(x: Any) -> Labels | None:
    """The names of a labelled 1-D input (a ``dict``'s keys, a Series' index), else None."""
    if isinstance(x, Mapping):
        return list(x.keys())
    if _is_series(x):
        return list(x.index)
    return None


def matrix_labels(x: Any) -> Labels | None:
    """The column names of a DataFrame-like square matrix, else None."""
    if hasattr(x, "columns") and hasattr(x, "index") and not isinstance(x, np.ndarray):
        return list(x.columns)
    return None


def _show(items: Sequence[Hashable], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def check_labels(found: Sequence[Hashable], expected: Sequence[Hashable], name: str,
                 error: type[QuantkitError], what: str = "the assets") -> None:
    """Raise ``error`` unless ``found`` holds exactly the names in ``expected`` (any order)."""
    if len(set(found)) != len(found):
        dup = sorted({repr(k) for k in found if list(found).count(k) > 1})
        raise error(f"{name} has duplicate labels {', '.join(dup)}", field=name, value=dup)
    have, want = set(found), set(expected)
    if have == want:
        return
    missing = [k for k in expected if k not in have]
    extra = [k for k in found if k not in want]
    parts = []
    if missing:
        parts.append(f"missing {_show(missing)}")
    if extra:
        parts.append(f"not among {what}: {_show(extra)}")
    raise error(f"{name} is labelled but its labels do not match {what} ({'; '.join(parts)})",
                field=name, missing=[repr(k) for k in missing], extra=[repr(k) for k in extra])


def reorder(x: Any, names: Sequence[Hashable]) -> FloatArray:
    """The values of a labelled 1-D input in the order of ``names`` (labels already checked)."""
    if isinstance(x, Mapping):
        return as_float_array([x[k] for k in names])
    position = {k: i for i, k in enumerate(x.index)}
    values = as_float_array(x)
    return np.asarray(values[[position[k] for k in names]], dtype=np.float64)


def align_vector(x: Any, names: Sequence[Hashable] | None, name: str,
                 error: type[QuantkitError]) -> FloatArray:
    """``x`` as a flat float64 array, by name when it is labelled and ``names`` are known.

    A ``dict`` without known ``names`` is an error; a Series without them is read in its own
    order; anything else is positional (shape checks are the caller's).
    """
    found = labels_of(x)
    if found is None:
        return as_float_array(x).reshape(-1)
    if names is None:
        if isinstance(x, Mapping):
            raise error(f"{name} is given by name ({_show(found)}) but the asset names are not "
                        "known: pass a labelled covariance (pandas) or assets=[...], or give "
                        f"{name} as an array in the covariance's order", field=name)
        return as_float_array(x).reshape(-1)
    check_labels(found, names, name, error)
    return reorder(x, names)


def align_matrix(x: Any, name: str, error: type[QuantkitError]
                 ) -> tuple[Any, Labels | None]:
    """A square matrix and its names: a DataFrame's rows are put in the order of its columns
    (an error when the two name sets differ); anything else comes back as it is, unnamed."""
    cols = matrix_labels(x)
    if cols is None:
        return x, None
    rows = list(x.index)
    if rows != cols:
        check_labels(rows, cols, f"the rows of {name}", error, what="its columns")
        x = x.loc[cols, cols]
    return x, cols


def align_frame(x: Any, like: Any, name: str, error: type[QuantkitError],
                like_name: str = "the first argument") -> Any:
    """``x`` with its rows and columns put in the order of ``like``'s, by label, when both are
    DataFrame-like (``index`` and ``columns``); otherwise ``x`` unchanged (positional, the
    caller checks shapes). Date and asset labels must match exactly: a panel of forward returns
    on other dates or other assets than the factor is an error, not NaN."""
    if matrix_labels(x) is None or matrix_labels(like) is None:
        return x
    rows, cols = list(like.index), list(like.columns)
    check_labels(list(x.index), rows, f"the dates (index) of {name}", error,
                 what=f"the dates of {like_name}")
    check_labels(list(x.columns), cols, f"the columns of {name}", error,
                 what=f"the columns of {like_name}")
    if list(x.index) == rows and list(x.columns) == cols:
        return x
    return x.loc[rows, cols]
