"""Pipeline review as of a date: the deals at risk, with the reasons and the learned chance of winning them.

Uses only what was known at ``as_of``: the pipeline is rebuilt with `pipeline_snapshots`, process
deviations with `deal_adherence(..., as_of=as_of)`, and the stage-conversion model is fitted on the history
known at ``as_of`` (`known_at`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from salesforecast.adherence import deal_adherence
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.schema import CRMData
from salesforecast.snapshots import known_at, pipeline_snapshots

__all__ = ["RISK_DEFINITIONS", "deals_at_risk"]

#: The risk flags and what they mean.
RISK_DEFINITIONS: dict[str, str] = {
    "stalled": "in its current stage longer than the stage's stall limit (the process map's max_days, else the "
    "90th percentile of completed visits)",
    "pushed >2": "close date moved later more than twice",
    "skipped stage": "jumped over at least one stage of the process map",
}


def deals_at_risk(
    data: CRMData,
    as_of: Any = None,
    model: StageConversionModel | None = None,
    max_pushes: int = 2,
) -> pd.DataFrame:
    """Open deals at `as_of` that stalled, were pushed more than `max_pushes` times or skipped a stage.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        The review date (default: the data's as-of). Only what was known then is used.
    model : StageConversionModel, optional
        A model fitted on data known at `as_of`; by default one is fitted here on ``known_at(data, as_of)``.
    max_pushes : int
        A deal is at risk when its close date was pushed more than this many times.

    Returns
    -------
    pandas.DataFrame
        One row per open deal at risk, largest amount first: ``opportunity_id, owner, team, stage, amount,
        close_date, days_in_stage, close_date_pushes, skipped_stages, stalled, risks`` (the flags in words),
        ``win_probability`` (learned, given its stage and days in stage) and ``crm_probability``.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> risky = deals_at_risk(load_sample(), "2025-06-30")
    >>> bool(risky["win_probability"].between(0, 1).all())
    True
    """
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    snap = pipeline_snapshots(data, as_of).reset_index(drop=True)
    deals = deal_adherence(data, as_of=as_of).set_index("opportunity_id")
    cols = ["close_date_pushes", "skipped_stages", "stalled_now"]
    flags = deals[cols].reindex(snap["opportunity_id"].to_numpy()).reset_index(drop=True)
    stalled = flags["stalled_now"].fillna(False).astype(bool)
    pushed = flags["close_date_pushes"].fillna(0).to_numpy() > max_pushes
    skipped = flags["skipped_stages"].fillna(0).to_numpy() > 0
    at_risk = stalled.to_numpy() | pushed | skipped
    if model is None:
        model = StageConversionModel(process=data.process).fit(known_at(data, as_of))
    known = snap["stage"].notna().to_numpy()
    proba = np.full(len(snap), np.nan)
    if known.any():
        proba[known] = np.asarray(model.predict_proba(snap.loc[known]), dtype=float)
    words = np.array(
        [
            "; ".join(w for w, f in zip(("stalled", f"pushed >{max_pushes}", "skipped stage"), row, strict=True) if f)
            for row in zip(stalled.to_numpy(), pushed, skipped, strict=True)
        ],
        dtype=object,
    )
    out = pd.DataFrame(
        {
            "opportunity_id": snap["opportunity_id"],
            "owner": snap["owner"],
            "team": snap["team"] if "team" in snap.columns else pd.Series(pd.NA, index=snap.index, dtype="str"),
            "stage": snap["stage"],
            "amount": snap["amount"],
            "close_date": snap["close_date"],
            "days_in_stage": snap["days_in_stage"],
            "close_date_pushes": flags["close_date_pushes"].fillna(0).astype("int64"),
            "skipped_stages": flags["skipped_stages"].fillna(0).astype("int64"),
            "stalled": stalled,
            "risks": pd.Series(words, dtype="str"),
            "win_probability": proba,
            "crm_probability": snap["stage"].map(data.process.probability).astype("float64"),
        }
    )
    return out[at_risk].sort_values("amount", ascending=False, kind="stable").reset_index(drop=True)
