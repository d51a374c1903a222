"""The CRM check (`compare_with_crm`) on data too short for it: an empty, well-formed comparison with the reason,
never an exception that loses the stage-conversion report; and 02 on such data renders, saying why the check is
missing and which check dates would do."""

from pathlib import Path

import pandas as pd
import pytest

from salesforecast.calibration import compare_with_crm
from salesforecast.datasets import load_sample
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import known_at, pipeline_snapshots
from tests.factories import deal_tables, render_report

REPO = Path(__file__).resolve().parents[1]
ACME = REPO / "examples" / "mapping" / "acme.yml"


@pytest.fixture(scope="module")
def sample() -> CRMData:
    return load_sample()


@pytest.fixture(scope="module")
def scored(sample):
    """A comparison that scores deals: the shape every empty one must have."""
    result = compare_with_crm(sample, "2024-07-01")
    assert result.reason == "" and len(result.predictions) > 50
    return result


def _closes(data: CRMData) -> pd.Series:
    opps = data.opportunities
    return opps.loc[opps["is_closed"], "close_date"]


def _assert_empty_like(result, scored) -> None:
    assert result.model is None
    for name in ("scores", "calibration", "predictions"):
        empty, full = getattr(result, name), getattr(scored, name)
        assert empty.empty, name
        assert empty.columns.tolist() == full.columns.tolist(), name
        assert empty.dtypes.to_dict() == full.dtypes.to_dict(), name
        assert empty.index.name == full.index.name, name
    # what a report does with a comparison works on the empty one too
    assert result.scores.reset_index().columns.tolist() == scored.scores.reset_index().columns.tolist()
    assert dict(list(result.calibration.groupby("method"))) == {}


def test_no_deal_open_at_the_cutoff(sample, scored):
    cutoff = sample.opportunities["created_at"].min() - pd.Timedelta(days=30)
    result = compare_with_crm(sample, cutoff.normalize())
    _assert_empty_like(result, scored)
    closes = _closes(sample)
    assert result.cutoff == cutoff.normalize()
    assert result.reason.startswith(f"No deal was open on {cutoff:%Y-%m-%d}, so there is nothing to score;")
    # what would make it possible: check dates between the data's first and last close
    assert f"after the data's first close ({closes.min():%Y-%m-%d})" in result.reason
    assert f"before its last close ({closes.max():%Y-%m-%d})" in result.reason


def test_nothing_closed_by_the_cutoff_to_learn_from(sample, scored):
    first_close = _closes(sample).min()
    cutoff = first_close.normalize() - pd.Timedelta(days=1)
    assert len(pipeline_snapshots(sample, cutoff)) > 0  # deals were open then: only learning is impossible
    result = compare_with_crm(sample, cutoff)
    _assert_empty_like(result, scored)
    assert result.reason.startswith(f"No deal had closed by {cutoff:%Y-%m-%d}, so nothing was learned then")


def test_none_of_the_deals_open_at_the_cutoff_has_closed_since(sample, scored):
    cutoff = sample.as_of
    snap = pipeline_snapshots(sample, cutoff)
    n_open = int(snap["stage"].notna().sum())
    result = compare_with_crm(sample, cutoff)
    _assert_empty_like(result, scored)
    assert result.reason.startswith(
        f"None of the {n_open} deals open on {cutoff:%Y-%m-%d %H:%M} has closed since (the data end on "
        f"{sample.as_of:%Y-%m-%d %H:%M}), so no outcome scores the probabilities;"
    )


def test_no_deal_closed_at_all(sample, scored):
    before_any_close = known_at(sample, _closes(sample).min() - pd.Timedelta(hours=1))
    assert not before_any_close.opportunities["is_closed"].any()
    result = compare_with_crm(before_any_close, before_any_close.as_of)
    _assert_empty_like(result, scored)
    assert result.reason == (
        "No deal has closed in the data, so no outcome can score the probabilities; the comparison needs closed "
        "deals (won or lost)."
    )


def test_every_close_on_one_day_says_no_check_date_can_do():
    deals = {
        "A": ("2024-01-02", [("2024-01-02", "Prospecting", 100.0, "2024-03-01")]),
        "B": (
            "2024-01-03",
            [
                ("2024-01-03", "Prospecting", 100.0, "2024-03-01"),
                ("2024-03-01 10:00", "Closed Won", 100.0, "2024-03-01"),
            ],
        ),
        "C": (
            "2024-01-04",
            [
                ("2024-01-04", "Prospecting", 100.0, "2024-03-01"),
                ("2024-03-01 12:00", "Closed Lost", 100.0, "2024-03-01"),
            ],
        ),
    }
    data = validate(deal_tables(deals))
    assert data.quarantine.empty
    result = compare_with_crm(data, "2024-02-01")
    assert result.scores.empty and result.model is None
    assert result.reason.startswith("No deal had closed by 2024-02-01")
    assert result.reason.endswith(
        "every deal in the data closed on 2024-03-01, and a check needs deals closed before its date to learn from "
        "and deals closed after it to score."
    )


def test_a_cutoff_with_deals_to_score_still_scores(sample, scored):
    """The empty result is only for cutoffs without deals: the check date the window names scores deals."""
    closes = _closes(sample)
    inside = closes.min().normalize() + pd.Timedelta(days=60)
    result = compare_with_crm(sample, inside)
    assert result.reason == "" and result.model is not None
    assert len(result.predictions) > 0 and result.scores.index.tolist() == ["crm_default", "learned"]


def test_stage_conversion_report_on_short_data_says_why_the_crm_check_is_missing(tmp_path):
    """On the acme mapping (five months, ten deals) the CRM-check cell raised "no deal open at ... has closed
    since" and lost the whole report; now it renders, with a sentence in place of the check."""
    text = render_report(tmp_path, "02_stage_conversion", ACME)
    assert "Traceback" not in text
    for heading in ("Stage by stage", "Funnel", "Where deals go next", "Are the CRM"):
        assert heading in text, heading
    # acme's data run from 2024-01-08 to 2024-05-31: six months before the end there was no deal yet
    assert "No CRM check." in text
    assert "No deal was open on 2023-11-30, so there is nothing to score" in text
    assert "the holdout (6 months) before the report date (2024-05-31)" in text
