"""Process adherence on a history that never recorded close dates or amounts (issue 13: "a report never shows a
number it would not defend"). A stage history derived from date columns holds stages only, so every deal showed
0 close-date pushes and 0 amount cuts, and the pipeline review said no closed deal had its close date pushed.
Those counts are unknown, not zero: missing in `deal_adherence`, missing shares in `adherence_by`, left out of
`deviation_outcomes`, and a warning says so once per call."""

import warnings

import numpy as np
import pandas as pd
import pytest

from salesforecast.adherence import (
    DEVIATIONS,
    UnrecordedHistoryWarning,
    adherence_by,
    deal_adherence,
    deviation_outcomes,
)
from salesforecast.datasets import generate, load_sample
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.snapshots import unrecorded_fields
from tests.factories import render_report

PUSH_COLUMNS = ["close_date_pushes", "days_pushed", "close_date_pull_ins", "days_pulled_in"]
PUSH_VISITS = ["pushed_visit", "pushed_3plus_visit"]
AMOUNT_COLUMNS = ["amount_changes", "amount_decreases", "amount_net_change", "amount_pct_change"]


@pytest.fixture(scope="module")
def recorded():
    return generate(n_opportunities=600, seed=1)[0]


@pytest.fixture(scope="module")
def derived(recorded):
    data = history_from_dates(recorded)
    assert {"close_date", "amount"} <= set(unrecorded_fields(data))
    return data


@pytest.fixture(scope="module")
def deals(derived):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnrecordedHistoryWarning)
        return deal_adherence(derived)


def test_pushes_and_amount_cuts_are_missing_not_zero(deals, recorded):
    for c in PUSH_COLUMNS + PUSH_VISITS + ["amount_decreased_visit"] + AMOUNT_COLUMNS:
        assert deals[c].dtype == "float64", c
        assert deals[c].isna().all(), c
    assert deals.attrs["unrecorded"] == ("close_date", "amount")
    # what the stages tell is still measured, as on the recorded history (the derived one has the same stages)
    assert deals["stalls"].dtype == "int64" and deals["skipped_stage_visit"].dtype == "int64"
    assert deals["outcome"].value_counts().to_dict() == deal_adherence(recorded)["outcome"].value_counts().to_dict()
    # the recorded history of the same deals does have pushes: 0 would have been wrong, not merely unknown
    assert (deal_adherence(recorded)["close_date_pushes"] > 0).any()


def test_warning_is_one_sentence_per_call_naming_what_is_unknown_and_why(derived):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deal_adherence(derived)
    ours = [w for w in caught if issubclass(w.category, UnrecordedHistoryWarning)]
    assert len(ours) == 1 and issubclass(UnrecordedHistoryWarning, UserWarning)
    text = str(ours[0].message)
    assert text.startswith("Close-date pushes and pull-ins are unknown: the stage history did not record close dates")
    assert "amount cuts are unknown: the stage history did not record amounts" in text
    assert text.endswith(".") and "not as zero" in text


def test_only_close_dates_unrecorded_leaves_amount_cuts_measured(recorded):
    hist = recorded.stage_history.assign(close_date=pd.NaT)
    data = type(recorded)(**{**recorded.__dict__, "stage_history": hist})
    assert "close_date" in unrecorded_fields(data) and "amount" not in unrecorded_fields(data)
    with pytest.warns(UnrecordedHistoryWarning, match="Close-date pushes and pull-ins are unknown") as caught:
        got = deal_adherence(data)
    assert "amount" not in str(caught[0].message).lower()
    assert got[PUSH_COLUMNS + PUSH_VISITS].isna().all().all()
    full = deal_adherence(recorded)
    pd.testing.assert_series_equal(got["amount_decreases"], full["amount_decreases"])
    pd.testing.assert_series_equal(got["amount_decreased_visit"], full["amount_decreased_visit"])
    out = deviation_outcomes(got, n_boot=200)
    assert out.index.tolist() == ["skipped_stage", "regression", "stalled", "amount_decreased"]


def test_adherence_by_gives_missing_shares_for_what_the_history_did_not_record(deals):
    by = adherence_by(deals, "team")
    for c in ["share_pushed", "share_pushed_3plus", "share_amount_decreased", "mean_pushes"]:
        assert by[c].isna().all(), c
    for c in ["share_skipped_stage", "share_regression", "share_stalled", "share_followed_map"]:
        assert by[c].notna().all(), c
    assert (by["share_stalled"] > 0).any()
    assert int(by["deals"].sum()) == len(deals)


def test_deviation_outcomes_leaves_out_the_unmeasured_deviations(deals):
    out = deviation_outcomes(deals, n_boot=200)
    assert out.index.tolist() == ["skipped_stage", "regression", "stalled"]
    assert set(out.attrs["not_recorded"]) == {"pushed", "pushed_3plus", "amount_decreased"}
    assert out.attrs["not_recorded"]["pushed"].startswith(
        "Close-date pushes are unknown: the history did not record close dates"
    )
    assert not out["verdict"].str.contains("close date pushed").any()


def test_recorded_histories_keep_every_deviation_and_raise_no_warning():
    """Guards the recorded case (the sample): integer counts, all six deviations, no warning. The branch's outputs
    on the sample and on generate() were compared with main's with pandas.testing (identical, attrs included)."""
    sample = load_sample()
    assert unrecorded_fields(sample) == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnrecordedHistoryWarning)
        deals = deal_adherence(sample)
    assert "unrecorded" not in deals.attrs
    for c in ["close_date_pushes", "close_date_pull_ins", "amount_decreases", "amount_changes"] + [
        f"{d.name}_visit" for d in DEVIATIONS
    ]:
        assert deals[c].dtype == "int64", c
    assert (deals["close_date_pushes"] > 0).any() and (deals["amount_decreases"] > 0).any()
    by = adherence_by(deals, "team")
    assert by[["share_pushed", "share_amount_decreased", "mean_pushes"]].notna().all().all()
    out = deviation_outcomes(deals, n_boot=200)
    assert out.index.tolist() == [d.name for d in DEVIATIONS] and "not_recorded" not in out.attrs
    assert np.isfinite(out.loc["pushed", "win_rate_with"])


def test_pipeline_review_says_pushes_are_unknown_on_a_history_derived_from_dates(derived, tmp_path):
    folder = derived.to_folder(tmp_path / "crm")
    text = render_report(tmp_path, "05_pipeline_review", folder)
    assert "Traceback" not in text
    start = text.index('id="read-this-first"')
    box = text[start : text.index("</section>", start)]
    assert "Close-date pushes and pull-ins are unknown: the stage history did not record close dates" in box
    # no zero claim: neither a verdict "No closed deal had its close date pushed" nor a column of 0 pushes
    assert "had its close date pushed" not in text
    assert "No closed deal had their close date pushed" not in text and "close date pushes" not in text
    assert "Close-date pushes are unknown: the history did not record close dates" in text
    assert "nothing to compare" in text  # the measured deviations are still compared (here: no closed deal skipped)


#: Fingerprints (pandas.util.hash_pandas_object, summed) of the columns this change touches, computed with main's
#: code (commit 7369f7c) on the sample: a recorded history must keep exactly the same values and dtypes.
MAIN_SAMPLE_HASHES = {
    "close_date_pushes": 18376486350155445450,
    "days_pushed": 4134551561238890082,
    "close_date_pull_ins": 0,
    "days_pulled_in": 0,
    "amount_changes": 6542794781588163959,
    "amount_decreases": 1255143013673460681,
    "amount_net_change": 5719460772208657291,
    "amount_pct_change": 17032778449842356322,
    "pushed_visit": 14692720940508684444,
    "pushed_3plus_visit": 13733180897016455971,
    "amount_decreased_visit": 2977008667141556431,
}


def test_sample_values_are_main_values():
    deals = deal_adherence(load_sample())
    got = {c: int(pd.util.hash_pandas_object(deals[c], index=False).sum()) for c in MAIN_SAMPLE_HASHES}
    assert got == MAIN_SAMPLE_HASHES
    by = adherence_by(deals, "team")
    assert by["share_pushed"].round(12).to_dict() == {
        "APAC": 0.308203991131,
        "EMEA": 0.34837962963,
        "NA East": 0.351912568306,
        "NA West": 0.335064935065,
    }
    assert by["mean_pushes"].round(12).to_dict() == {
        "APAC": 0.49889135255,
        "EMEA": 0.516203703704,
        "NA East": 0.501639344262,
        "NA West": 0.496103896104,
    }
    out = deviation_outcomes(deals, n_boot=200)
    assert out["n_with"].to_dict() == {
        "skipped_stage": 563,
        "regression": 301,
        "stalled": 747,
        "pushed": 967,
        "pushed_3plus": 102,
        "amount_decreased": 474,
    }
    assert out["wins_with"].to_dict() == {
        "skipped_stage": 246,
        "regression": 99,
        "stalled": 181,
        "pushed": 426,
        "pushed_3plus": 76,
        "amount_decreased": 188,
    }


def test_deals_at_risk_shows_unknown_pushes_as_missing_not_zero():
    from salesforecast.review import deals_at_risk

    crm = generate(n_opportunities=600, seed=1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        derived = deals_at_risk(history_from_dates(crm))
        recorded = deals_at_risk(crm)
    assert len(derived) and derived["close_date_pushes"].isna().all()
    assert recorded["close_date_pushes"].dtype == "int64"
