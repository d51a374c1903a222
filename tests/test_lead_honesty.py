"""Lead scoring that says what it cannot do (issue 13, "weak models say so").

A score no better than chance is called so, with no tiers or reasons; tied scores use fewer tiers; identifiers,
hashes and rare levels are no reasons; date parts stay only when they help; a column filled only for converted
leads is left out. `weak_funnel` builds a marketing funnel whose conversions have nothing to do with its features.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from salesforecast.datasets import generate
from salesforecast.leads import (
    MIN_HOLDOUT_CONVERSIONS,
    MIN_TRAIN_CONVERSIONS,
    check_holdout,
    lead_dataset,
    lead_holdout,
    model_notes,
    rank_leads,
)
from salesforecast.models.lead_scoring import (
    LeadScoringModel,
    LeakageWarning,
    TierWarning,
    WeakModelWarning,
    auc_interval,
)
from salesforecast.schema import CRMData


def weak_funnel(n_leads: int = 400, seed: int = 0, months: int = 11, rate: float = 0.10) -> CRMData:
    """A leads-only CRM over `months` months whose conversion (about `rate`) is unrelated to every feature.

    The leads and their features are the generator's; each lead converts by a coin toss of probability `rate`,
    after a delay of 3 to 60 days (never after the data's end), with no opportunity: opportunities, stage
    history, forecast submissions and quotas are empty, as in a marketing-funnel export.
    """
    data, _ = generate(n_opportunities=max(200, n_leads // 2), seed=seed, years=1)
    rng = np.random.default_rng(seed)
    leads = data.leads
    start = leads["created_at"].min()
    end = start + pd.DateOffset(months=months)
    leads = leads[leads["created_at"] < end]
    leads = leads.iloc[np.sort(rng.choice(len(leads), min(n_leads, len(leads)), replace=False))].copy()
    converted = rng.random(len(leads)) < rate
    delay = pd.to_timedelta(rng.uniform(3, 60, len(leads)), unit="D")
    at = (leads["created_at"] + delay).where(converted)
    converted &= (at < end).to_numpy()
    leads["converted"] = converted
    leads["converted_at"] = at.where(converted).astype("datetime64[us]")
    leads["opportunity_id"] = pd.Series(pd.NA, index=leads.index, dtype="str")
    data.leads = leads.reset_index(drop=True)
    for table in ("opportunities", "stage_history", "forecast_submissions", "quotas"):
        setattr(data, table, getattr(data, table).iloc[:0])
    return data


def test_weak_funnel_is_leads_only_with_about_a_tenth_converted():
    data = weak_funnel()
    assert data.opportunities.empty and data.stage_history.empty
    assert 300 <= len(data.leads) <= 400
    assert 0.06 <= data.leads["converted"].mean() <= 0.12
    span = data.leads["created_at"].max() - data.leads["created_at"].min()
    assert pd.Timedelta(days=300) <= span <= pd.Timedelta(days=336)


# ------------------------------------------------------------------------------------------------ the report
def _render(tmp_path, data: CRMData, as_of: str, **params) -> str:
    from salesforecast.reports import DEFAULT_CONFIG, run_reports

    folder = data.to_folder(tmp_path / "crm")
    result = run_reports(
        DEFAULT_CONFIG,
        tmp_path / "out",
        only=["03_lead_scoring"],
        params={"source": str(folder), **params},
        jobs=1,
        as_of=as_of,
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("03_lead_scoring*.html")
    return page.read_text(encoding="utf-8")


def test_report_on_a_weak_leads_only_funnel_says_no_better_than_chance_and_shows_no_tiers_or_reasons(tmp_path):
    """The issue's marketing funnel: 11 months, a tenth converted, conversion unrelated to the features, no
    opportunities. The report rendered tier A with 100% of the leads and reasons; now it says so and shows none."""
    data = weak_funnel()
    as_of = str((data.leads["created_at"].min() + pd.DateOffset(months=11)).date())
    text = _render(tmp_path, data, as_of, maturity_days=60, holdout_months=3)
    assert "Traceback" not in text
    assert "no better than chance on this data" in text
    assert re.search(r"trained on [\d,]+ leads \([\d,]+ conversions\)", text)
    assert "fewer than the 30 needed to tell" in text and "same score" in text
    assert "training (outcomes known at the holdout start)" in text  # the leads and conversions table
    assert "No tiers: the lead score is no better than chance" in text
    assert "No drivers: the lead score is no better than chance" in text
    assert "open leads at" in text and "not ranked" in text
    assert "share_of_conversions" not in text and "share of conversions" not in text.replace("the share of", "")
    assert "raises the odds" not in text and "lowers the odds" not in text


def test_report_on_generated_leads_without_teams_shows_tiers_and_reasons(tmp_path):
    """The generator's leads carry a real signal: tiers and reasons show; the CRM has no team column."""
    data, _ = generate(n_opportunities=800, seed=11, years=2)
    data.opportunities = data.opportunities.drop(columns=["team"])
    text = _render(tmp_path, data, str(data.as_of.date()))
    assert "Traceback" not in text
    assert "ranks later leads better than chance" in text and "no better than chance on this data" not in text
    assert ">A<" in text and ">D<" in text  # the tier table
    assert "raises the odds" in text or "lowers the odds" in text
    assert "_month = " not in text and "_day_of_week = " not in text  # the generator's dates carry no signal
