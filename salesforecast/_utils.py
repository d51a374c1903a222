"""Small shared helpers (internal)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def isin(s: pd.Series, values: Any) -> pd.Series:
    """``s.isin(values)`` that stays fast for millions of string values.

    pandas' arrow-backed ``str`` dtype builds one Python scalar per element of `values` in ``isin``; a hash
    lookup through an `Index` of the unique values does the same in vectorised code. Missing never matches.
    """
    uniques = pd.Index(pd.unique(pd.Series(values).dropna()))
    if len(uniques) == 0:
        return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)
    return pd.Series(uniques.get_indexer(s) >= 0, index=s.index)
