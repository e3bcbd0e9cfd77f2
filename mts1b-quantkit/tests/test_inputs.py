"""One conversion of callers' inputs (pandas, lists, arrays) to float64 numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_quantkit import sizing
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.portfolio import risk_contributions

pd = pytest.importorskip("pandas")


def test_lists_arrays_and_pandas_become_float64_with_nan_for_missing() -> None:
    expected = np.array([[1.0, 2.0], [np.nan, 4.0]])
    for given in (
        [[1, 2], [None, 4]],
        np.array([[1, 2], [np.nan, 4]]),
        pd.DataFrame({"a": [1.0, None], "b": [2, 4]}),
        pd.DataFrame({"a": [1, pd.NA], "b": [2, 4]}, dtype="Int64"),  # nullable ints
        pd.DataFrame({"a": [1.0, None], "b": [2.0, 4.0]}, dtype="Float64"),
        pd.DataFrame({"a": [1, None], "b": [2, 4]}, dtype=object),
    ):
        got = as_float_array(given)
        assert got.dtype == np.float64 and isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(as_float_array(pd.Index([3, 4])), [3.0, 4.0])
    with pytest.raises(ValueError, match="could not convert string to float"):
        as_float_array(pd.Series(["a", "b"]))


def test_sizing_reads_nullable_scores_like_float_ones() -> None:
    scores = np.array([[0.5, np.nan, -0.2, 1.0], [np.nan, 0.3, 0.1, -0.4]])
    nullable = pd.DataFrame(scores).astype("Float64")  # the NaN become pd.NA
    assert nullable.isna().to_numpy().sum() == 2
    for method in ("rank_weighted", "equal_weight_long", "score_weighted"):
        np.testing.assert_array_equal(sizing.size(nullable, method), sizing.size(scores, method))


def test_portfolio_inputs_may_be_labelled() -> None:
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    w = np.array([0.6, 0.4])
    labels = ["A", "B"]
    got = risk_contributions(pd.Series(w, index=labels), pd.DataFrame(cov, labels, labels))
    # pandas hands over a column-major copy, so the products may round in another order
    np.testing.assert_allclose(got, risk_contributions(w, cov), rtol=0, atol=1e-15)
