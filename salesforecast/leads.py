"""Leads as a modelling problem, known at a date: which leads have an outcome, which are still open.

A lead's outcome is *known* at ``as_of`` when it converted by then, or when it has had `maturity_days` to
convert and did not (most conversions happen within weeks; the bundled sample's conversion delay is capped at
180 days). Younger unconverted leads are *open*: they are the ones a rep should prioritise, and they are left
out of training because their outcome is not known yet (counting them as failures would bias every model
toward "no").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from salesforecast.schema import CRMData

__all__ = ["LEAD_OUTCOME_COLUMNS", "LeadDataset", "lead_dataset"]

#: Columns that are ids or describe the outcome: never features.
LEAD_OUTCOME_COLUMNS: tuple[str, ...] = ("lead_id", "converted", "converted_at", "opportunity_id")


@dataclass(frozen=True)
class LeadDataset:
    """Leads split by what is known at `as_of`.

    Attributes
    ----------
    X : pandas.DataFrame
        Features of the leads with a known outcome (index: lead_id), including ``created_at`` for time-ordered
        validation.
    y : pandas.Series
        1 when the lead converted by `as_of`.
    open : pandas.DataFrame
        Features of the open leads (created at or before `as_of`, not converted, younger than `maturity_days`).
    as_of : pandas.Timestamp
    maturity_days : int
    """

    X: pd.DataFrame
    y: pd.Series
    open: pd.DataFrame
    as_of: pd.Timestamp
    maturity_days: int


def lead_dataset(data: CRMData, as_of: Any = None, maturity_days: int = 180) -> LeadDataset:
    """Features and known outcomes of the leads at `as_of`, and the open leads to rank.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        Default: the data's as-of. Leads created later do not exist yet; conversions later have not happened.
    maturity_days : int
        An unconverted lead older than this has a known outcome (not converted).

    Returns
    -------
    LeadDataset

    Raises
    ------
    ValueError
        When the data has no leads.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> ds = lead_dataset(load_sample(), "2025-06-30")
    >>> bool(ds.X["created_at"].max() <= pd.Timestamp("2025-06-30")), sorted(set(ds.y.tolist()))
    (True, [0, 1])
    """
    leads = data.leads
    if leads.empty:
        raise ValueError("the data has no leads table (leads.csv): lead scoring needs one")
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    leads = leads[leads["created_at"] <= as_of]
    converted = (leads["converted"] & (leads["converted_at"].isna() | (leads["converted_at"] <= as_of))).to_numpy()
    mature = (leads["created_at"] <= as_of - pd.Timedelta(days=maturity_days)).to_numpy()
    known = converted | mature
    features = leads.drop(columns=[c for c in LEAD_OUTCOME_COLUMNS if c in leads.columns])
    features.index = pd.Index(leads["lead_id"], name="lead_id")
    y = pd.Series(converted.astype("int64"), index=features.index, name="converted")
    return LeadDataset(
        X=features[known],
        y=y[known],
        open=features[~known],
        as_of=as_of,
        maturity_days=int(maturity_days),
    )
