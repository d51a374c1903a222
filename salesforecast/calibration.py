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
    model : StageConversionModel
        The model fitted on what was known at the cutoff.
    cutoff : pandas.Timestamp
    """

    scores: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    model: StageConversionModel
    cutoff: pd.Timestamp


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
        tables), ``predictions`` and the fitted ``model``.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> result = compare_with_crm(load_sample(), "2024-07-01")
    >>> result.scores.index.tolist()
    ['crm_default', 'learned']
    >>> bool(result.scores.loc["learned", "brier"] < result.scores.loc["crm_default", "brier"])
    True
    """
    cutoff = pd.Timestamp(cutoff)
    snap = pipeline_snapshots(data, cutoff)
    snap = snap.loc[snap["stage"].notna()].reset_index(drop=True)
    outcome = data.opportunities.set_index("opportunity_id")[["is_closed", "is_won"]].reindex(snap["opportunity_id"])
    closed = outcome["is_closed"].fillna(False).to_numpy(dtype=bool)
    snap = snap.loc[closed].reset_index(drop=True)
    if snap.empty:
        raise ValueError(f"no deal open at {cutoff} has closed since; pick an earlier cutoff")
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
