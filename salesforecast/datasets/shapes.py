"""Data shapes real exports have, derived from a complete CRM (e.g. one made by `generate`).

A generated CRM holds everything: every stage change with its amount, close date and forecast category. Real
exports hold less. The functions here take a complete `CRMData` and return it as a poorer export would give it, so
that every analysis can be checked on the shapes users bring, against the complete data as reference.

- `history_from_dates`: the stage history a current-state export allows, derived from its date columns as a
  mapping's ``stage_history: derive_from_dates: {created_at: first_open_stage, close_date: outcome}`` does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from salesforecast.schema import CRMData

__all__ = ["history_from_dates"]


def history_from_dates(data: CRMData, *, first_stage: Literal["process", "recorded"] = "process") -> CRMData:
    """The CRM re-derived as a current-state export would give it: a stage history from date columns alone.

    The stage history keeps only what the opportunities' dates can tell, as the mapping entry
    ``stage_history: derive_from_dates: {created_at: first_open_stage, close_date: outcome}`` derives it
    (`salesforecast.io.mapping`):

    - one change at ``created_at`` into the first stage (by default the process's first open stage: a current-state
      export does not say which stage a deal was created in);
    - for closed deals, one change at ``close_date`` into the deal's won or lost stage.

    No other stage change is kept, and no past amount, close date or forecast category: those history columns
    are all missing, which is how the package recognises fields the history did not record
    (`salesforecast.snapshots.unrecorded_fields`: at a past cutoff, a deal still open then has no close date,
    instead of the date it actually closed).
    Open deals are seen in the first stage until today, whatever their current stage (as the mapping does
    without a ``current_stage`` date). The opportunities and the other tables are unchanged; ``counts``,
    ``sources`` and ``notes`` describe the new history, and its quarantine rows are dropped.

    Parameters
    ----------
    data : CRMData
        A validated CRM, typically ``generate(...)[0]``.
    first_stage : {"process", "recorded"}, default "process"
        The stage entered at creation: the process's first open stage (``"process"``, what the mapping's
        ``first_open_stage`` gives), or the stage the full history records at the deal's first change
        (``"recorded"``: an export whose deals carry the stage they were created in; deals without any history
        row get the first open stage).

    Returns
    -------
    CRMData
        `data` with the derived stage history (same columns and dtypes).

    Examples
    --------
    >>> from salesforecast.datasets import generate
    >>> data, _ = generate(n_opportunities=300, seed=1, years=1)
    >>> derived = history_from_dates(data)
    >>> closed = int(data.opportunities["is_closed"].sum())
    >>> len(derived.stage_history) == len(data.opportunities) + closed
    True
    >>> derived.stage_history[["amount", "close_date", "forecast_category"]].notna().any().tolist()
    [False, False, False]
    >>> derived.stage_history.groupby("opportunity_id")["stage"].first().unique().tolist()
    ['Prospecting']
    """
    if first_stage not in ("process", "recorded"):
        raise ValueError(f"first_stage must be 'process' or 'recorded', not {first_stage!r}")
    proc = data.process
    opps = data.opportunities
    start_stage = pd.Series(proc.open_stages[0], index=opps.index, dtype="str")
    if first_stage == "recorded" and len(data.stage_history):
        hist = data.stage_history.sort_values(["opportunity_id", "changed_at"], kind="stable")
        created_in = hist.groupby("opportunity_id", sort=False)["stage"].first()
        recorded = opps["opportunity_id"].map(created_in)
        start_stage = recorded.where(recorded.notna(), start_stage).astype("str")
    closed = opps["is_closed"].to_numpy(dtype=bool) & opps["close_date"].notna().to_numpy()
    created = opps["created_at"].notna().to_numpy()
    ids = opps["opportunity_id"]
    parts = pd.DataFrame(
        {
            "opportunity_id": pd.concat([ids[created], ids[closed]], ignore_index=True),
            "changed_at": pd.concat([opps["created_at"][created], opps["close_date"][closed]], ignore_index=True),
            "stage": pd.concat([start_stage[created], opps["stage"][closed]], ignore_index=True),
            "_opp": np.concatenate([np.flatnonzero(created), np.flatnonzero(closed)]),
            "_entry": np.repeat([0, 1], [int(created.sum()), int(closed.sum())]),
        }
    )
    parts = parts.sort_values(["_opp", "changed_at", "_entry"], kind="stable").reset_index(drop=True)
    dtypes = data.stage_history.dtypes
    history = pd.DataFrame(
        {
            "opportunity_id": parts["opportunity_id"].astype(dtypes.get("opportunity_id", "str")),
            "changed_at": parts["changed_at"].astype(dtypes.get("changed_at", "datetime64[us]")),
            "stage": parts["stage"].astype(dtypes.get("stage", "str")),
        }
    )
    for column, dtype in (("amount", "float64"), ("close_date", "datetime64[us]"), ("forecast_category", "str")):
        history[column] = pd.Series(np.nan, index=history.index).astype(dtypes.get(column, dtype))
    counts = data.counts.copy()
    counts.loc["stage_history", ["read", "accepted", "quarantined"]] = [len(history), len(history), 0]
    quarantine = data.quarantine[data.quarantine["table"] != "stage_history"].reset_index(drop=True)
    source = data.sources.get("opportunities", "<opportunities>")
    sources = {**data.sources, "stage_history": f"derived from dates of {source} (created_at, close_date)"}
    entered = proc.open_stages[0] if first_stage == "process" else "the stage the deal was created in"
    note = (
        f"The stage history is minimal: derived from dates of {source} (created_at -> {entered}"
        f" ({int(created.sum())} rows); close_date -> the won/lost stage of closed deals ({int(closed.sum())} rows))."
        " It holds only these dated stages: no other stage changes, and no changes of amount, close date or"
        " forecast category; stages between the dated ones look skipped, and time in stage is measured only"
        " between these dates."
    )
    return replace(
        data,
        stage_history=history,
        counts=counts.astype("int64"),
        quarantine=quarantine,
        sources=sources,
        notes=(note, *data.notes),
    )
