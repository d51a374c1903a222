"""Are the CRM's stage probabilities right? Learned and default probabilities scored on later outcomes.

`compare_with_crm` fits a `StageConversionModel` on what was known at a cutoff and scores it, next to the
process map's default stage probabilities, on the deals open at the cutoff that closed afterwards: Brier score
with its Murphy decomposition, and the calibration tables of a reliability diagram.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from salesforecast._utils import when_text
from salesforecast.metrics import brier_decomposition, brier_score, calibration_table
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.schema import CRMData
from salesforecast.snapshots import pipeline_snapshots

__all__ = ["CRMComparison", "compare_with_crm"]


@dataclass(frozen=True)
class CRMComparison:
    """Learned against CRM default probabilities, scored on deals open at a cutoff (see `compare_with_crm`).

    Attributes
    ----------
    scores : pandas.DataFrame
        Index ``method`` (``crm_default``, ``learned``); columns ``n, brier, reliability, resolution,
        uncertainty, mean_predicted, observed_rate``.
    calibration : pandas.DataFrame
        `salesforecast.metrics.calibration_table` of each method, stacked with a ``method`` column.
    predictions : pandas.DataFrame
        One row per scored deal: ``opportunity_id, stage, days_in_stage, won, crm_default, learned``.
    model : StageConversionModel or None
        The model fitted on what was known at the cutoff; None when nothing could be scored (see `reason`).
    cutoff : pandas.Timestamp
    reason : str
        Empty when the deals were scored. Otherwise a sentence saying why nothing could be scored at `cutoff`
        and which check dates would have deals to learn from and to score; the three tables are then empty,
        with their columns and dtypes.
    """

    scores: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    model: StageConversionModel | None
    cutoff: pd.Timestamp
    reason: str = ""


def compare_with_crm(
    data: CRMData,
    cutoff: Any,
    model: StageConversionModel | None = None,
    n_bins: int = 10,
    strategy: str = "quantile",
) -> CRMComparison:
    """Score the process map's default probabilities and the learned ones on deals open at `cutoff`.

    The model is fitted on the data as known at `cutoff` (`known_at`: no change after it; visits open at it are
    censored), so nothing after the cutoff leaks into it. The scored deals are those open at `cutoff`
    (`pipeline_snapshots`) that have closed since (outcome: won or lost); deals still open now are left out,
    which leans the scored set toward faster deals: pick a cutoff well before the data end.

    Parameters
    ----------
    data : CRMData
        The full data (the outcomes after `cutoff` come from it).
    cutoff : date
    model : StageConversionModel, optional
        Settings to use (it is cloned, not changed); default ``StageConversionModel(n_bootstrap=0)``.
    n_bins : int
        Bins of the calibration tables and of the Brier decomposition (equal-width bins of [0, 1] there).
    strategy : {"quantile", "uniform"}
        Binning of the calibration tables.

    Returns
    -------
    CRMComparison
        ``scores`` (Brier score and Murphy decomposition per method), ``calibration`` (reliability-diagram
        tables), ``predictions`` and the fitted ``model``. When nothing can be scored at `cutoff` (no deal has
        closed, none was open at `cutoff`, none had closed by it to learn from, or none of those open then has
        closed since: short data, or a cutoff outside it), the tables are empty with their usual columns,
        ``model`` is None and ``reason`` says why and which cutoffs would do; nothing is raised, so a report
        keeps what it already computed.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> result = compare_with_crm(load_sample(), "2024-07-01")
    >>> result.scores.index.tolist()
    ['crm_default', 'learned']
    >>> bool(result.scores.loc["learned", "brier"] < result.scores.loc["crm_default", "brier"])
    True
    >>> early = compare_with_crm(load_sample(), "2022-06-30")
    >>> early.scores.empty, early.reason.split(";")[0]
    (True, 'No deal was open on 2022-06-30, so there is nothing to score')
    """
    cutoff = pd.Timestamp(cutoff)
    opps = data.opportunities
    closes = opps.loc[opps["is_closed"].astype(bool), "close_date"].dropna()
    if closes.empty:
        return _nothing_to_score(
            cutoff,
            "No deal has closed in the data, so no outcome can score the probabilities; the comparison "
            "needs closed deals (won or lost).",
        )
    window = _check_window(closes)
    snap = pipeline_snapshots(data, cutoff)
    snap = snap.loc[snap["stage"].notna()].reset_index(drop=True)
    if snap.empty:
        return _nothing_to_score(
            cutoff, f"No deal was open on {when_text(cutoff)}, so there is nothing to score; {window}"
        )
    if not (closes <= cutoff).any():
        return _nothing_to_score(
            cutoff,
            f"No deal had closed by {when_text(cutoff)}, so nothing was learned then to set against the CRM's "
            f"probabilities; {window}",
        )
    outcome = opps.set_index("opportunity_id")[["is_closed", "is_won"]].reindex(snap["opportunity_id"])
    closed = outcome["is_closed"].fillna(False).to_numpy(dtype=bool)
    n_open = len(snap)
    snap = snap.loc[closed].reset_index(drop=True)
    if snap.empty:
        return _nothing_to_score(
            cutoff,
            f"None of the {n_open} deal{'s' if n_open != 1 else ''} open on {when_text(cutoff)} has closed since (the "
            f"data end on {when_text(data.as_of)}), so no outcome scores the probabilities; {window}",
        )
    y = outcome["is_won"].to_numpy(dtype=bool)[closed]
    est = StageConversionModel(n_bootstrap=0) if model is None else clone(model)
    est.fit(data, as_of=cutoff)
    crm = est.process_.probability.reindex(snap["stage"].to_numpy()).to_numpy()
    learned = est.predict_proba(snap).to_numpy()
    rows, tables = {}, []
    for method, p in (("crm_default", crm), ("learned", learned)):
        d = brier_decomposition(y, p, n_bins=n_bins)
        rows[method] = {
            "n": len(y),
            "brier": brier_score(y, p),
            "reliability": d.reliability,
            "resolution": d.resolution,
            "uncertainty": d.uncertainty,
            "mean_predicted": float(np.mean(p)),
            "observed_rate": float(np.mean(y)),
        }
        table = calibration_table(y, p, n_bins=n_bins, strategy=strategy)  # type: ignore[arg-type]
        table.insert(0, "method", method)
        tables.append(table)
    scores = pd.DataFrame.from_dict(rows, orient="index")
    scores.index.name = "method"
    scores["n"] = scores["n"].astype(np.int64)
    predictions = pd.DataFrame(
        {
            "opportunity_id": snap["opportunity_id"],
            "stage": snap["stage"],
            "days_in_stage": snap["days_in_stage"],
            "won": y,
            "crm_default": crm,
            "learned": learned,
        }
    )
    return CRMComparison(
        scores=scores,
        calibration=pd.concat(tables, ignore_index=True),
        predictions=predictions,
        model=est,
        cutoff=cutoff,
    )


_SCORE_COLUMNS = ("n", "brier", "reliability", "resolution", "uncertainty", "mean_predicted", "observed_rate")
_CALIBRATION_COLUMNS = (
    "method",
    "bin",
    "lower",
    "upper",
    "mean_predicted",
    "observed_rate",
    "count",
    "ci_lower",
    "ci_upper",
)
_PREDICTION_COLUMNS = ("opportunity_id", "stage", "days_in_stage", "won", "crm_default", "learned")


def _check_window(closes: pd.Series) -> str:
    """Which check dates have deals to learn from (closed before) and to score (open then, closed after)."""
    first, last = closes.min(), closes.max()
    if first.normalize() >= last.normalize():
        return (
            f"every deal in the data closed on {when_text(first.normalize())}, and a check needs deals closed before "
            "its date to learn from and deals closed after it to score."
        )
    return (
        f"a check date after the data's first close ({when_text(first.normalize())}) and before its last close "
        f"({when_text(last.normalize())}) has deals closed before it to learn from and deals open then that closed "
        "after it to score."
    )


def _nothing_to_score(cutoff: pd.Timestamp, reason: str) -> CRMComparison:
    """The comparison of `compare_with_crm` when nothing can be scored: empty tables of the usual shape."""
    scores = pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "n" else np.float64) for c in _SCORE_COLUMNS})
    scores.index = pd.Index([], dtype="str", name="method")
    ints = ("bin", "count")
    calibration = pd.DataFrame(
        {
            c: pd.Series(dtype="str" if c == "method" else np.int64 if c in ints else np.float64)
            for c in _CALIBRATION_COLUMNS
        }
    )
    kinds = {"opportunity_id": "str", "stage": "str", "won": bool}
    predictions = pd.DataFrame({c: pd.Series(dtype=kinds.get(c, np.float64)) for c in _PREDICTION_COLUMNS})
    return CRMComparison(
        scores=scores, calibration=calibration, predictions=predictions, model=None, cutoff=cutoff, reason=reason
    )
