"""The deal lists of the pipeline review (`salesforecast.review.deal_lists`): slipped or pushed this period, overdue,
stalled, created this period; split by close date against the period, sorted by amount at risk, cut with "N of M"."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from salesforecast.adherence import deal_adherence
from salesforecast.datasets import generate
from salesforecast.datasets.gallery import SHAPES
from salesforecast.labels import COLUMNS
from salesforecast.models.stage_conversion import StageConversionModel
from salesforecast.movement import pipeline_waterfall, waterfall_deals
from salesforecast.reports import format_table
from salesforecast.review import DEAL_LISTS, TIMINGS, deal_lists, list_caption, waterfall_window
from salesforecast.schema import validate
from salesforecast.snapshots import pipeline_snapshots
from tests.factories import deal_tables

PERIOD = "FY2024Q3"  # July to September 2024 (the default calendar)
AS_OF = pd.Timestamp("2024-08-15 12:00")
P, Q, N = "Prospecting", "Qualification", "Needs Analysis"

#: Hand-made deals: id -> (created, [(changed_at, stage, amount, close_date), ...]).
DEALS = {
    # in the period when it began, then pushed out of it
    "PUSHED_OUT": ("2024-06-01", [("2024-06-01", P, 50_000, "2024-08-20"), ("2024-07-10", Q, 50_000, "2024-10-15")]),
    # pushed within the period
    "PUSHED_IN": ("2024-06-01", [("2024-06-01", N, 30_000, "2024-08-01"), ("2024-07-20", N, 30_000, "2024-09-10")]),
    # pushed before the period began: not this period's push
    "PUSHED_BEFORE": ("2024-05-01", [("2024-05-01", P, 8_000, "2024-07-05"), ("2024-06-15", P, 8_000, "2024-09-05")]),
    # moved before the period: the waterfall's pulled out, and overdue
    "PULLED": ("2024-06-01", [("2024-06-01", Q, 20_000, "2024-08-30"), ("2024-07-20", Q, 20_000, "2024-06-15")]),
    "OVERDUE": ("2024-05-01", [("2024-05-01", Q, 40_000, "2024-08-14")]),  # due the day before the report date
    "DUE_TODAY": ("2024-05-01", [("2024-05-01", Q, 45_000, "2024-08-15")]),  # due on the report date: not overdue
    "OLD_OVERDUE": ("2024-03-01", [("2024-03-01", P, 10_000, "2024-06-30")]),  # overdue since an earlier period
    "NEW": ("2024-07-05", [("2024-07-05", P, 12_000, "2024-09-30")]),
    "NEW_LATER": ("2024-08-01", [("2024-08-01", P, 60_000, "2024-12-15")]),
    "NEW_AFTER": ("2024-08-20", [("2024-08-20", P, 99_000, "2024-09-15")]),  # created after the report date
    "UNDATED": ("2024-06-01", [("2024-06-01", P, 5_000, None), ("2024-07-01", Q, 5_000, None)]),
    "WON": (
        "2024-04-01",
        [("2024-04-01", P, 70_000, "2024-07-31"), ("2024-07-31", "Closed Won", 70_000, "2024-07-31")],
    ),
    "LOST": (
        "2024-04-01",
        [("2024-04-01", Q, 9_000, "2024-07-15"), ("2024-07-15", "Closed Lost", 9_000, "2024-07-15")],
    ),
}


@pytest.fixture(scope="module")
def generated():
    return generate(n_opportunities=1200, seed=4, years=2)[0]


@pytest.fixture(scope="module")
def model(generated):
    """A model of the default process (the hand-made deals are too few to learn from)."""
    return StageConversionModel(process=generated.process, n_bootstrap=0).fit(generated)


@pytest.fixture(scope="module")
def built():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return validate(deal_tables(DEALS))


@pytest.fixture(scope="module")
def lists(built, model):
    return deal_lists(built, PERIOD, AS_OF, model=model)


def ids(frame):
    return set(frame["opportunity_id"])


def test_every_list_holds_open_deals_only_and_the_right_ones(lists):
    assert ids(lists.deals) == set(DEALS) - {"WON", "LOST", "NEW_AFTER"}
    assert ids(lists.members("slipped")) == {"PUSHED_OUT", "PUSHED_IN", "PULLED"}
    assert ids(lists.members("overdue")) == {"OVERDUE", "OLD_OVERDUE", "PULLED"}
    assert ids(lists.members("created")) == {"NEW", "NEW_LATER"}
    slip = lists.deals.set_index("opportunity_id")["slip"]
    assert slip["PUSHED_OUT"] == "pushed out of FY2024Q3"
    assert slip["PUSHED_IN"] == "pushed once"
    assert slip["PULLED"] == "moved before FY2024Q3"
    assert slip["PUSHED_BEFORE"] == ""


def test_overdue_is_exactly_open_with_a_close_day_before_the_report_day(lists, generated, model):
    deals = lists.deals.set_index("opportunity_id")
    assert deals.loc["OVERDUE", "days_overdue"] == 1 and deals.loc["OLD_OVERDUE", "days_overdue"] == 46
    assert not deals.loc["DUE_TODAY", "overdue"] and not deals.loc["UNDATED", "overdue"]
    assert pd.isna(deals.loc["DUE_TODAY", "days_overdue"])
    for as_of in ("2024-03-31 10:00", "2024-08-15"):
        got = deal_lists(generated, "FY2024Q1", as_of, model=model)
        snap = pipeline_snapshots(generated, as_of)
        late = snap["close_date"].dt.normalize() < pd.Timestamp(as_of).normalize()
        assert ids(got.members("overdue")) == set(snap.loc[late, "opportunity_id"]) and late.any()


def test_this_periods_deals_come_first_and_apart_from_later_ones(lists, built, model):
    lo, hi = lists.period_bounds
    for name in DEAL_LISTS:
        parts = lists.parts(name)
        assert [TIMINGS.index(p.timing) for p in parts] == sorted(TIMINGS.index(p.timing) for p in parts)
        for part in parts:
            close = part.rows["close_date"]
            if part.timing == "this_period":
                assert ((close >= lo) & (close < hi)).all() and part.heading == "Closing in FY2024Q3"
            elif part.timing == "earlier":
                assert (close < lo).all() and part.folded
            elif part.timing == "later":
                assert (close >= hi).all() and part.folded
            elif part.timing == "no_close_date":
                assert close.isna().all() and part.folded
    created = {p.timing: ids(p.rows) for p in lists.parts("created")}
    assert created == {"this_period": {"NEW"}, "later": {"NEW_LATER"}}
    overdue = {p.timing: ids(p.rows) for p in lists.parts("overdue")}
    assert overdue == {"this_period": {"OVERDUE"}, "earlier": {"OLD_OVERDUE", "PULLED"}}
    # the slipped list keeps the deals that left the period apart: this period's business when it began
    slipped = {p.timing: ids(p.rows) for p in lists.parts("slipped")}
    assert slipped == {"this_period": {"PUSHED_IN"}, "moved_out": {"PUSHED_OUT", "PULLED"}}


@pytest.mark.parametrize("as_of", ["2024-08-15 12:00", "2024-09-30", "2024-11-20"])
def test_the_waterfalls_pushed_out_deals_are_in_the_slipped_list_with_its_amounts(generated, model, as_of):
    lo, _ = generated.process.calendar.period_bounds("FY2024Q3")
    got = deal_lists(generated, "FY2024Q3", as_of, model=model)
    window = waterfall_window(generated, lo, as_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = pipeline_waterfall(generated, *window, period="FY2024Q3").set_index("step")
        rows = waterfall_deals(generated, *window, period="FY2024Q3")
    for step in ("pushed out", "pulled out"):
        listed = got.deals.loc[got.deals["waterfall_step"] == step]
        assert ids(listed) == set(rows.loc[rows["step"] == step, "opportunity_id"])
        assert len(listed) == steps.loc[step, "deals"]
        assert listed["amount"].fillna(0).sum() == pytest.approx(steps.loc[step, "amount"])
    assert ids(got.deals.loc[got.deals["waterfall_step"].notna()]) <= ids(got.members("slipped"))
    assert steps.loc["pushed out", "deals"] > 0
    (moved,) = [p for p in got.parts("slipped") if p.timing == "moved_out"]
    out = steps.loc[["pushed out", "pulled out"]]
    assert moved.total == out["deals"].sum() and moved.amount == pytest.approx(out["amount"].sum())


def test_the_slipped_list_holds_the_pushes_made_since_the_period_began(generated, model):
    from salesforecast.history import DealHistory

    got = deal_lists(generated, "FY2024Q3", "2024-08-15", model=model)
    h = DealHistory.from_data(generated)
    lo = pd.Timestamp("2024-07-01")
    start = h.start.view("datetime64[us]")
    pushed = (start >= np.datetime64(lo)) & (start <= np.datetime64("2024-08-15")) & (h.moves.close_date_days > 0)
    expected = set(h.ids[np.unique(h.deal[pushed])]) & ids(got.deals)
    assert expected and expected <= ids(got.members("slipped"))
    rest = got.members("slipped").loc[lambda d: ~d["opportunity_id"].isin(expected)]
    assert rest["waterfall_step"].notna().all()  # every other slipped deal left the period in the waterfall


def test_stalled_is_the_adherence_stall_of_open_deals(generated, model):
    got = deal_lists(generated, "FY2024Q3", "2024-08-15", model=model)
    adh = deal_adherence(generated, as_of="2024-08-15")
    stalled = set(adh.loc[adh["stalled_now"] & (adh["outcome"] == "open"), "opportunity_id"])
    assert stalled and ids(got.members("stalled")) == stalled
    limits = got.members("stalled")
    assert (limits["days_in_stage"].astype(float) >= np.floor(limits["stall_limit_days"])).all()


def test_lists_are_sorted_by_amount_at_risk_and_cut_with_n_of_m(generated, model):
    got = deal_lists(generated, "FY2024Q3", "2024-08-15", model=model, top=3, top_other=2)
    deals = got.deals
    expected = np.round(deals["amount"] * (1 - deals["win_probability"]))
    assert np.allclose(deals["amount_at_risk"], expected.fillna(deals["amount"]))
    assert deals["amount_at_risk"].is_monotonic_decreasing
    cut = 0
    for name in DEAL_LISTS:
        members = got.members(name)
        timings = np.where(members["waterfall_step"].notna(), "moved_out", members["timing"])
        for part in got.parts(name):
            every = members.loc[(timings if name == "slipped" else members["timing"].to_numpy()) == part.timing]
            assert part.total == len(every) and part.amount == pytest.approx(every["amount"].sum())
            assert part.rows["opportunity_id"].tolist() == every["opportunity_id"].head(len(part.rows)).tolist()
            assert part.rows["amount_at_risk"].is_monotonic_decreasing
            assert len(part.rows) == min(part.total, 2 if part.folded else 3)
            if part.total > len(part.rows):
                cut += 1
                assert part.caption.startswith(f"{len(part.rows)} of {part.total} deals, largest amount at risk first.")
            else:
                assert part.caption.startswith("All ")
    assert cut


def test_the_caption_says_shown_of_total_and_the_totals():
    assert list_caption(25, 312, 4_210_000, 2_100_000, 1_300_000, "EUR") == (
        "25 of 312 deals, largest amount at risk first. All 312: €4.21M, of which €2.1M at risk; "
        "the 287 not shown: €1.3M."
    )
    assert list_caption(3, 3, 9_500, 1_000, 0, "CHF") == "All 3 deals: 9.5k CHF, of which 1k CHF at risk."


def test_every_column_shown_has_a_label_and_no_cell_reads_true_false_or_nan(lists):
    for name in DEAL_LISTS:
        for part in lists.parts(name):
            assert set(part.rows.columns) <= set(COLUMNS), set(part.rows.columns) - set(COLUMNS)
            page = format_table(part.rows, currency="EUR", caption=part.caption).to_html()
            cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
            assert not {"True", "False", "nan", "NaN", "None", "NaT", "<NA>"} & {c.strip() for c in cells}
            assert "amount at risk (EUR)" in page and "learned win probability" in page
    summary = lists.summary()
    assert set(summary.columns) <= set(COLUMNS)
    assert summary.set_index("list")["deals"].tolist() == [len(lists.members(n)) for n in DEAL_LISTS]


def test_a_period_not_begun_has_nothing_slipped_or_created(built, model):
    got = deal_lists(built, "FY2024Q4", AS_OF, model=model)
    assert "FY2024Q4 begins on 2024-10-01, after the report date (2024-08-15)" in got.empty_sentence("slipped")
    assert got.members("created").empty and got.members("slipped").empty
    assert ids(got.members("overdue")) == {"OVERDUE", "OLD_OVERDUE", "PULLED"}


def test_open_deals_without_close_dates_are_counted_and_listed_apart():
    data = SHAPES["open_deals_without_close_dates"].build(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = deal_lists(data, "FY2024Q4")
    n = len(got.deals)
    assert n and got.deals["close_date"].isna().all()
    assert f"{n} of the {n} deals open at {data.as_of:%Y-%m-%d} have no close date" in got.notes[0]
    assert got.members("overdue").empty and got.members("slipped").empty
    assert {p.timing for name in DEAL_LISTS for p in got.parts(name)} == {"no_close_date"}


@pytest.mark.parametrize("shape", ["current_state_only", "history_from_dates"])
def test_without_a_history_of_moves_days_in_stage_and_stalls_are_unknown(shape):
    data = SHAPES[shape].build(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = deal_lists(data, "FY2024Q4")
    assert len(got.deals) and got.deals["days_in_stage"].isna().all()
    assert any(note.startswith("Days in stage are unknown (–)") for note in got.notes)
    assert "cannot be told" in got.empty_sentence("stalled") and got.members("stalled").empty
    assert "did not record close dates" in got.empty_sentence("slipped")
    assert got.summary().set_index("list").loc["Stalled", ["deals"]].isna().all()
    assert len(got.members("created")) and len(got.members("overdue"))  # what the current state tells


def test_deals_without_history_rows_have_unknown_days_in_stage(built, model):
    tables = deal_tables(DEALS)
    tables["stage_history"] = tables["stage_history"].loc[lambda h: h["opportunity_id"] != "OVERDUE"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = deal_lists(validate(tables), PERIOD, AS_OF, model=model)
    days = got.deals.set_index("opportunity_id")["days_in_stage"]
    assert pd.isna(days["OVERDUE"]) and days.drop("OVERDUE").notna().all()
    assert "1 of the 10 deals open at 2024-08-15 has no stage history: its days in stage are unknown" in " ".join(
        got.notes
    )


def test_the_pipeline_review_shows_the_lists_with_their_captions(sample_suite):
    """05 on the sample (FY2025Q4 at its last day; the session's render of reports.yml, `sample_suite`): the four
    lists under "Deals at risk", this period's deals first, the waterfall's 10 pushed-out deals (951k) listed apart,
    later ones folded with "N of M"."""
    import html

    from salesforecast.datasets import load_sample
    from tests.test_gallery_common import number, table_after

    page = (sample_suite / "05_pipeline_review.html").read_text(encoding="utf-8")
    section = html.unescape(page[page.index('id="Deals-at-risk"') :])
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section))
    for name in DEAL_LISTS:
        assert DEAL_LISTS[name].title in text
    steps = table_after(page, "How the pipeline moved").set_index("step")
    pushed = number(steps.loc["pushed out", "amount"])
    assert number(steps.loc["pushed out", "deals"]) == 10 and pushed == 951_160
    expected = deal_lists(load_sample(), "FY2025Q4")  # the counts and amounts do not depend on the model's seed
    (moved,) = [p for p in expected.parts("slipped") if p.timing == "moved_out"]
    assert moved.total == 10 and moved.amount == pushed
    assert "Moved out of FY2025Q4 (the waterfall's pushed out and pulled out)" in text
    assert "All 10 deals: 951k, of which" in text
    for name in DEAL_LISTS:
        for part in expected.parts(name):
            shown = f"{part.total} deals" if part.total == len(part.rows) else f"{len(part.rows)} of {part.total} deals"
            assert f"{part.heading}" in text and shown in text, (name, part.heading, shown)
            if part.folded:
                assert re.search(
                    rf"<summary><b>{re.escape(html.escape(part.heading))}</b>: {len(part.rows)} of", section
                )
    assert section.index("Closing in FY2025Q4") < section.index("Closing after FY2025Q4")
    assert "Sorted by amount at risk, largest first: amount × (1 − learned win probability)" in re.sub(
        r"<[^>]+>", "", section
    )
    cells = {c.strip() for c in re.findall(r"<td[^>]*>([^<]*)</td>", section)}
    assert not {"True", "False", "nan", "NaN", "None", "NaT"} & cells
