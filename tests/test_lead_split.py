"""A lead split that leaves training nearly empty says so (issue 13, fresh-eyes review of 03).

`late_funnel` is the reviewer's shape: leads over 11.5 months whose conversions are recorded up to 7 months after
the last lead, so ``as_of="latest"`` (the last conversion) with the defaults maturity_days=180 and
holdout_months=6 trains on the first weeks only. The report must blame the split, give both sizes and the report
parameters that balance it, and those parameters must work.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from salesforecast.leads import MIN_TRAIN_CONVERSIONS, check_holdout, lead_holdout, suggest_split
from salesforecast.models.lead_scoring import WeakModelWarning
from salesforecast.schema import CRMData
from tests.test_lead_honesty import _render, weak_funnel


def late_funnel(seed: int = 0) -> CRMData:
    """`weak_funnel`'s leads over 350 days, a sixth converted mostly 3-60 days after creation; the last conversion
    is recorded 210 days after the last lead (a late one), so the data's as-of is seven months after it."""
    data = weak_funnel(n_leads=1500, seed=seed, months=12, rate=0.0)
    rng = np.random.default_rng(seed)
    leads = data.leads
    leads = leads[leads["created_at"] < leads["created_at"].min() + pd.Timedelta(days=350)].copy()
    converted = rng.random(len(leads)) < 1 / 6
    days = np.where(rng.random(len(leads)) < 0.995, rng.uniform(3, 60, len(leads)), rng.uniform(60, 150, len(leads)))
    at = leads["created_at"] + pd.to_timedelta(days, unit="D")
    last = leads["created_at"].idxmax()
    converted[leads.index.get_loc(last)] = True
    at.loc[last] = leads.loc[last, "created_at"] + pd.Timedelta(days=210)
    leads["converted"] = converted
    leads["converted_at"] = at.where(converted).astype("datetime64[us]")
    data.leads = leads.reset_index(drop=True)
    return data


def test_late_funnel_is_the_reviewers_shape():
    data = late_funnel()
    train, X_test, _ = lead_holdout(data, data.as_of)  # the defaults: 180 days, 6 months
    assert len(train.X) < 0.1 * len(X_test) and train.y.sum() < MIN_TRAIN_CONVERSIONS


def test_split_verdict_names_the_split_the_sizes_and_parameters_that_balance_it():
    data = late_funnel()
    train, X_test, y_test = lead_holdout(data, data.as_of)
    advice = suggest_split(data, data.as_of)
    assert advice.works and advice.maturity_days in (60, 90, 120, 150)
    assert advice.train_leads >= 2 * advice.test_leads and advice.train_conversions >= MIN_TRAIN_CONVERSIONS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = check_holdout(
            train.y, y_test, np.full(len(y_test), 0.2), split=advice, settings="maturity_days=180, holdout_months=6"
        )
    assert any(issubclass(w.category, WeakModelWarning) and w.message.args[0] == check.verdict for w in caught)
    v = check.verdict
    assert "cannot be judged with this split of the leads (maturity_days=180, holdout_months=6)" in v
    assert f"training gets only {len(train.X):,} leads ({int(train.y.sum()):,} conversions" in v
    assert f"the holdout gets {len(X_test):,}" in v and "The split, not drift or the features, is the cause" in v
    assert "95% of the converted leads converted within" in v
    assert advice.command in v and "-p maturity_days=" in advice.command
    # the suggestion is what lead_holdout does with it
    t2, X2, y2 = lead_holdout(data, data.as_of, advice.maturity_days, advice.holdout_months)
    assert (len(t2.X), int(t2.y.sum()), len(X2), int(y2.sum())) == (
        advice.train_leads,
        advice.train_conversions,
        advice.test_leads,
        advice.test_conversions,
    )
    # without advice (or with a training side big enough) the verdict is the usual one
    with pytest.warns(WeakModelWarning, match="fewer than the 30 needed to tell"):
        plain = check_holdout(train.y, y_test, np.full(len(y_test), 0.2))
    assert "split" not in plain.verdict


def test_report_blames_the_split_and_its_suggested_parameters_train_on_most_leads(tmp_path):
    data = late_funnel()
    text = _render(tmp_path / "default", data, "latest")
    assert "cannot be judged with this split of the leads" in text
    found = re.search(
        r"salesforecast report --only 03_lead_scoring -p (\S+) -p maturity_days=(\d+) -p holdout_months=(\d+)", text
    )
    assert found, "the page gives the report parameters"
    assert found.group(1) == f"source={tmp_path / 'default' / 'crm'}"  # the command runs as shown, on this source
    assert "check for drift" not in text  # the model's weak validation blames too little data, not drift
    assert "validation ROC AUC" in text or "barely ranks" not in text
    days, months = map(int, found.groups()[1:])
    text = _render(tmp_path / "advised", data, "latest", maturity_days=days, holdout_months=months)
    assert "cannot be judged with this split" not in text
    trained = re.search(r"trained on ([\d,]+) leads \(([\d,]+) conversions\) and checked on ([\d,]+)", text)
    n_tr, k_tr, n_te = (int(g.replace(",", "")) for g in trained.groups())
    assert n_tr >= 2 * n_te and k_tr >= MIN_TRAIN_CONVERSIONS


def test_needs_page_advice_leaves_a_useful_training_set_and_says_how_to_pass_it():
    """One side empty (the holdout start before any lead could be mature): besides the nearest holdout_months that
    gives both sides a lead, the message gives -p parameters whose training set holds enough conversions."""
    data = late_funnel()
    try:
        lead_holdout(data, data.as_of, maturity_days=180, holdout_months=12)
    except ValueError as err:
        msg = str(err)
    else:
        raise AssertionError("the training side should be empty")
    assert "no leads before the holdout start" in msg and "(report parameters: -p maturity_days=N" in msg
    found = re.search(
        r"--only 03_lead_scoring -p source=<your source> -p maturity_days=(\d+) -p holdout_months=(\d+)", msg
    )
    days, months = map(int, found.groups())
    train, X_test, y_test = lead_holdout(data, data.as_of, days, months)
    assert train.y.sum() >= MIN_TRAIN_CONVERSIONS and len(train.X) >= 2 * len(X_test) and y_test.sum() >= 20


def test_needs_page_says_the_data_are_too_short_when_no_split_is_useful():
    data = late_funnel()
    early = data.leads["created_at"].min() + pd.Timedelta(days=40)
    data.leads = data.leads[data.leads["created_at"] < early].reset_index(drop=True)
    as_of = early + pd.Timedelta(days=400)
    try:
        lead_holdout(data, as_of, maturity_days=180, holdout_months=12)
    except ValueError as err:
        msg = str(err)
    else:
        raise AssertionError("the training side should be empty")
    assert "the data are too short to judge a lead score on later leads" in msg
