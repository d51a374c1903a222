"""Issue 14, item 1: the headlines of 01, 02, 03 and 05 (`salesforecast.headlines`) and 05's total row.

Each headline function is checked on small data and on the degraded shapes of real exports (its sentence and its
figures are right, and it says what limits them); the four reports are rendered once on a gallery shape whose open
deals have no close date, and each page opens with its headline, the sentence the package computes.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from salesforecast import headlines, quality
from salesforecast.datasets import load_sample
from salesforecast.datasets.gallery import SHAPES
from salesforecast.io import load
from salesforecast.labels import format_amount
from salesforecast.leads import HoldoutCheck
from salesforecast.movement import coverage_total, pipeline_coverage
from salesforecast.reports import page_headline
from salesforecast.review import coverage_table
from salesforecast.schema import validate
from salesforecast.session import open_report
from tests.test_gallery_common import coverage_rows, number, shared_shape_run, visible_text

#: What the shapes are known to raise (the reports put these in the read-this-first box).
pytestmark = pytest.mark.filterwarnings(
    "ignore::salesforecast.movement.UndatedPipelineWarning", "ignore:no completed visit to stage:UserWarning"
)


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def shapes():
    names = ("current_state_only", "history_from_dates", "open_deals_without_close_dates", "leads_only", "no_quotas")
    return {name: SHAPES[name].build(0) for name in names}


def _figures(h: headlines.Headline) -> dict[str, str]:
    return {f.label: f.value for f in h.figures}


# ------------------------------------------------------------------------------------------------ 01
def test_data_quality_counts_are_the_table_counts_and_a_clean_sample_says_so(sample):
    h = headlines.data_quality(sample)
    totals = quality.table_counts(sample)[["read", "accepted", "quarantined"]].sum()
    assert _figures(h)["Rows read"] == f"{int(totals['read']):,}" and _figures(h)["Quarantined"] == "0"
    assert h.sentence.startswith(f"The data are clean: all {int(totals['read']):,} rows read were accepted")
    # the sample's one blemish: open deals whose close date has passed, counted as the quality table counts them
    dates = quality.open_deal_close_dates(sample).set_index("measure")["deals"]
    passed, n_open = int(dates["close date passed"]), int(dates["open deals"])
    assert f"the one thing to fix: {passed} of the {n_open} open deals" in h.sentence
    assert 3 <= len(h.figures) <= 6


def test_data_quality_names_the_top_quarantine_reason_with_its_share(crm_data):
    h = headlines.data_quality(crm_data)
    counts = quality.table_counts(crm_data)
    read, accepted, quarantined = (int(counts[c].sum()) for c in ("read", "accepted", "quarantined"))
    figures = _figures(h)
    assert figures["Rows read"] == f"{read:,}" and figures["Quarantined"] == f"{quarantined:,}"
    assert figures["Accepted"] == f"{100 * accepted / read:.1f}%"
    assert (
        f"{100 * accepted / read:.1f}% of the {read} rows read were accepted ({quarantined} quarantined)" in h.sentence
    )
    top = quality.quarantine_by_reason(crm_data).sort_values("rows", ascending=False, kind="stable").iloc[0]
    assert f"the main problem: {top['rows']} of the 10 opportunities" in h.sentence
    assert f"quarantined as {top['reason']}" in h.sentence
    assert h.sentence.startswith("Much of the data could not be used")  # 9 of 25 rows set aside


def test_data_quality_a_small_quarantine_is_usable_and_named():
    rows = 40
    opps = pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(rows)],
            "owner": ["ann"] * rows,
            "created_at": ["2024-01-02"] * rows,
            "stage": ["Qualification"] * (rows - 1) + ["Nowhere"],
            "amount": ["100"] * rows,
            "close_date": ["2024-03-01"] * rows,
            "is_closed": ["0"] * rows,
            "is_won": ["0"] * rows,
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(rows) for _ in range(2)],
            "changed_at": ["2024-01-02", "2024-01-09"] * rows,
            "stage": ["Prospecting", "Qualification"] * rows,
        }
    )
    data = validate({"opportunities": opps, "stage_history": hist})
    h = headlines.data_quality(data, as_of="2024-02-01")
    assert h.sentence.startswith("The data are usable: ")  # 3 of 120 rows (2.5%): no limit on the analyses
    # the cause (its stage), not the consequence (its two history rows set aside with it), though they are more
    assert "the main problem: 1 of the 40 opportunities (2.5%) was quarantined as unknown stage" in h.sentence
    assert _figures(h)["Quarantined"] == "3"


def test_data_quality_says_stage_changes_for_history_rows():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A", "B"],
            "owner": ["ann", "bo"],
            "created_at": ["2024-01-02"] * 2,
            "stage": ["Qualification"] * 2,
            "amount": ["100"] * 2,
            "close_date": ["2024-03-01"] * 2,
            "is_closed": ["0"] * 2,
            "is_won": ["0"] * 2,
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["A", "A", "B", "B"],
            "changed_at": ["2024-01-02", "2024-01-05", "2024-01-02", "2024-01-06"],
            "stage": ["Prospecting", "Qualification", "Prospekting", "Qualification"],
        }
    )
    h = headlines.data_quality(validate({"opportunities": opps, "stage_history": hist}), as_of="2024-02-01")
    assert "the main problem: 1 of the 4 stage changes (25.0%) was quarantined as unknown stage" in h.sentence


def test_data_quality_says_what_a_real_export_lacks(shapes):
    said = {name: headlines.data_quality(data).sentence for name, data in shapes.items()}
    assert said["current_state_only"].startswith("The data are usable with limits")
    assert "the main problem: there is no stage history" in said["current_state_only"]
    assert "the main problem: the stage history records no move between open stages" in said["history_from_dates"]
    open_deals = int((~shapes["open_deals_without_close_dates"].opportunities["is_closed"]).sum())
    assert (
        f"the main problem: {open_deals} of the {open_deals} open deals (100%) have no expected close date"
        in (said["open_deals_without_close_dates"])
    )
    assert "the data hold no opportunities" in said["leads_only"]
    assert "Deals with stage history" not in _figures(headlines.data_quality(shapes["leads_only"]))
    assert _figures(headlines.data_quality(shapes["current_state_only"]))["Deals with stage history"] == "0%"


def _loaded_at_one_moment(n: int = 20):
    """n open deals whose two stage changes each carry one timestamp (a data load)."""
    opps = pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(n)],
            "owner": ["ann"] * n,
            "created_at": ["2024-01-02"] * n,
            "stage": ["Qualification"] * n,
            "amount": ["100"] * n,
            "close_date": ["2024-03-01"] * n,
            "is_closed": ["0"] * n,
            "is_won": ["0"] * n,
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(n) for _ in range(2)],
            "changed_at": ["2024-02-01 10:00"] * (2 * n),
            "stage": ["Prospecting", "Qualification"] * n,
        }
    )
    return validate({"opportunities": opps, "stage_history": hist})


def test_data_quality_names_a_history_loaded_at_one_moment():
    n = 20
    h = headlines.data_quality(_loaded_at_one_moment(n), as_of="2024-02-02")
    assert "The data are usable with limits" in h.sentence
    assert f"{n} of the {n} deals (100%) have a history whose changes all carry one timestamp" in h.sentence


# ------------------------------------------------------------------------------------------------ 02
def _summary(rows):
    """A stage-conversion summary: (stage, crm, learned, lower, upper) per row; None learned: nothing learned."""
    out = pd.DataFrame(rows, columns=["stage", "crm_probability", "win_probability", "lower", "upper"])
    out["difference"] = out["win_probability"] - out["crm_probability"]
    out["learned_from"] = np.where(out["win_probability"].notna(), "history", "no deal left it: CRM default")
    return out


def _deals(closed: int, won: int, open_: int) -> SimpleNamespace:
    n = closed + open_
    return SimpleNamespace(  # no stage history: nothing it cannot show
        stage_history=pd.DataFrame(),
        opportunities=pd.DataFrame(
            {"is_closed": [True] * closed + [False] * open_, "is_won": [True] * won + [False] * (n - won)}
        ),
    )


def test_stage_conversion_names_the_largest_gap_outside_the_interval_not_the_largest_gap():
    summary = _summary(
        [
            ("Prospecting", 0.10, 0.16, 0.14, 0.18),  # +6 pp, CRM outside: off
            ("Proposal", 0.50, 0.30, 0.05, 0.55),  # -20 pp but CRM inside a wide interval: not off
            ("Negotiation", 0.90, 0.78, 0.74, 0.82),  # -12 pp, off: the largest significant gap
            ("Contract", 0.95, 0.94, 0.90, 0.97),  # inside
        ]
    )
    h = headlines.stage_conversion(SimpleNamespace(summary=summary, ci=0.9), _deals(120, 30, 15))
    assert h.sentence.startswith("On 120 closed deals, the CRM's probability is off at 2 of the 4 stages learned")
    assert "furthest at Negotiation (CRM 90%, learned 78%: **-12.0 pp**) and Prospecting" in h.sentence
    assert "Proposal" not in h.sentence
    figures = _figures(h)
    assert figures["Largest gap: Negotiation"] == "-12.0 pp" and figures["Stages off"] == "2 of 4"
    assert figures["Overall win rate"] == "25.0%" and figures["Deals analysed"] == "135"
    rep = headlines.stage_conversion(SimpleNamespace(summary=summary, ci=0.9), _deals(120, 30, 15), owner="ann")
    assert rep.sentence.startswith("On 120 closed deals of ann, the CRM's probability")


def test_stage_conversion_says_when_the_crm_matches_and_what_it_could_not_check():
    summary = _summary([("Prospecting", 0.10, 0.12, 0.08, 0.15), ("Proposal", 0.5, None, None, None)])
    h = headlines.stage_conversion(SimpleNamespace(summary=summary, ci=0.9), _deals(12, 3, 2))
    assert h.sentence == (
        "On 12 closed deals, the CRM's probabilities match the history: at the one stage learned, the CRM's "
        "probability lies inside the learned 90% interval; 1 stage no deal has left yet keeps the CRM default, "
        "unchecked."
    )
    assert "Largest gap" not in " ".join(_figures(h))
    nothing = _summary([("Prospecting", 0.10, None, None, None)])
    h = headlines.stage_conversion(SimpleNamespace(summary=nothing, ci=0.9), _deals(3, 1, 4))
    assert "no deal has left any stage of the process map yet" in h.sentence


def test_stage_conversion_on_the_sample_and_on_a_history_derived_from_dates(sample, shapes):
    from salesforecast.models.stage_conversion import StageConversionModel

    model = StageConversionModel(process=sample.process, n_bootstrap=30, random_state=0).fit(sample)
    h = headlines.stage_conversion(model, sample)
    s = model.summary
    off = s[(s["crm_probability"] < s["lower"]) | (s["crm_probability"] > s["upper"])]
    worst = off.loc[off["difference"].abs().idxmax()]
    closed = int(sample.opportunities["is_closed"].sum())
    assert h.sentence.startswith(f"On {closed:,} closed deals, the CRM's probability is off at {len(off)} of the")
    assert f"furthest at {worst['stage']} (CRM {worst['crm_probability']:.0%}" in h.sentence
    derived = shapes["history_from_dates"]
    model = StageConversionModel(process=derived.process, n_bootstrap=30, random_state=0).fit(derived)
    h = headlines.stage_conversion(model, derived)
    assert "7 stages no deal has left yet keep the CRM default, unchecked" in h.sentence  # only Prospecting learned
    assert h.sentence.startswith(
        f"On {int(derived.opportunities['is_closed'].sum())} closed deals (a history that records no move between "
        "open stages, only each deal's first stage and outcome), the CRM's probability is off at the one stage"
    )


def test_stage_conversion_names_a_history_loaded_at_one_moment():
    summary = _summary([("Prospecting", 0.10, 0.30, 0.2, 0.4), ("Qualification", 0.1, 0.12, 0.05, 0.2)])
    h = headlines.stage_conversion(SimpleNamespace(summary=summary, ci=0.9), _loaded_at_one_moment(20))
    assert h.sentence.startswith(
        "On 0 closed deals (20 of the 20 deals have a history loaded at one moment, so the order of their stages "
        "is unknown), the CRM's probability is off at 1 of the 2 stages learned"
    )


# ------------------------------------------------------------------------------------------------ 03
def _check(auc, low, high, better, train=(3000, 600), test=(2000, 400)) -> HoldoutCheck:
    return HoldoutCheck(*train, *test, auc, low, high, 0.95, better, "verdict")


def test_lead_scoring_no_better_than_chance_says_so_and_gives_no_tier():
    open_leads = pd.DataFrame(index=pd.Index([f"L{i}" for i in range(7)], name="lead_id"))
    h = headlines.lead_scoring(_check(0.52, 0.47, 0.57, False), open_leads)
    assert h.sentence.startswith("The lead score is **no better than chance** on this data: its interval includes 0.5")
    assert "ROC AUC 0.52, 95% interval 0.47–0.57" in h.sentence and "No lead is ranked or put in a tier" in h.sentence
    assert not any("tier A" in f.label for f in h.figures) and _figures(h)["Open leads"] == "7"
    few = headlines.lead_scoring(_check(0.8, 0.6, 0.95, False, train=(200, 12)), open_leads)
    assert "too few conversions to tell (12 to learn from, 400 to check on" in few.sentence
    worse = headlines.lead_scoring(_check(0.40, 0.35, 0.45, False), open_leads)
    assert "ranks later leads worse than a coin" in worse.sentence


def test_lead_scoring_better_than_chance_counts_the_open_leads_in_tier_a():
    open_leads = pd.DataFrame({"score": [0.9, 0.8, 0.1, 0.2, 0.7]}, index=pd.Index(list("abcde"), name="lead_id"))
    final = SimpleNamespace(
        tiers=lambda X: pd.Series(np.where(X["score"] > 0.75, "A", "C"), index=X.index, dtype="category"),
        tier_thresholds_=pd.Series([0.75, 0.5, 0.2, 0.0], index=list("ABCD")),
    )
    holdout_tiers = pd.Series(["A", "A", "B", "D"])
    h = headlines.lead_scoring(
        _check(0.77, 0.75, 0.80, True, test=(4, 2)), open_leads, final, holdout_tiers, [1, 1, 0, 0]
    )
    assert h.sentence == (
        "The lead score ranks later leads better than chance (holdout ROC AUC 0.77, 95% interval 0.75–0.80, on 4 "
        "later leads, 2 conversions): **2 of the 5 open leads are in tier A**, the best of 4 tiers."
    )
    figures = _figures(h)
    assert figures["Open leads in tier A"] == "2" and figures["Tier A conversion (holdout)"] == "100.0%"
    mine = headlines.lead_scoring(_check(0.77, 0.75, 0.80, True), open_leads, final, team="EMEA")
    assert "**2 of the 5 open leads of team EMEA are in tier A**" in mine.sentence
    with pytest.raises(ValueError, match="final model"):
        headlines.lead_scoring(_check(0.77, 0.75, 0.80, True), open_leads)


# ------------------------------------------------------------------------------------------------ 05
def test_the_total_row_sums_amounts_and_recomputes_ratios(sample):
    cov = pipeline_coverage(sample, "FY2025Q2", as_of="2025-05-15", by="team")
    total = coverage_total(cov).iloc[0]
    for c in ("quota", "closed_won", "won_deals", "open_pipeline", "open_deals", "weighted_pipeline"):
        assert total[c] == pytest.approx(cov[c].sum())
    assert total["attainment"] == pytest.approx(cov["closed_won"].sum() / cov["quota"].sum())
    assert total["attainment"] != pytest.approx(cov["attainment"].sum())  # recomputed, never summed
    left = cov["quota"].sum() - cov["closed_won"].sum()
    assert total["coverage"] == pytest.approx(cov["open_pipeline"].sum() / left)
    whole = pipeline_coverage(sample, "FY2025Q2", as_of="2025-05-15").iloc[0]  # the period as one row
    for c in ("quota", "closed_won", "open_pipeline", "attainment", "coverage", "weighted_coverage"):
        assert total[c] == pytest.approx(whole[c])
    table, _ = coverage_table(cov)
    assert table["team"].iloc[-1] == "Total (all teams)" and len(table) == len(cov) + 1
    by_rep = pipeline_coverage(sample, "FY2025Q2", as_of="2025-05-15", by="owner")
    assert coverage_total(by_rep).index[0] == "Total (all reps)"
    # one row: no total row; some rows without a quota: the total's quota is the known ones', and says so
    one, _ = coverage_table(cov.iloc[:1])
    assert len(one) == 1
    partial = cov.assign(quota=cov["quota"].where(cov.index != cov.index[0]))
    total = coverage_total(partial).iloc[0]
    assert total["quota"] == pytest.approx(cov["quota"].iloc[1:].sum())
    assert total["note"].startswith(f"quota known for {len(cov) - 1} of {len(cov)} rows")


def test_pipeline_review_headline_is_the_total_row_in_words(sample):
    cov = pipeline_coverage(sample, "FY2025Q2", as_of="2025-05-15", by="team")
    total = coverage_total(cov).iloc[0]
    h = headlines.pipeline_review(cov, currency="EUR")
    attainment, times = total["closed_won"] / total["quota"], total["coverage"]
    assert h.sentence.startswith(f"The company has won **{attainment:.1%} of its FY2025Q2 quota** by 2025-05-15 (")
    left = format_amount(total["quota"] - total["closed_won"], "EUR", short=True)
    assert left.startswith("€") and f"covers the {left} left **{times:.2f}×**" in h.sentence
    figures = _figures(h)
    assert figures["Attainment"] == f"{attainment:.1%}" and figures["Coverage"] == f"{times:.2f}×"
    assert figures["Teams at quota"] == f"{int((cov['attainment'] >= 1).sum())} of {len(cov)}"
    team = headlines.pipeline_review(cov.iloc[:1], team=str(cov.index[0]))
    assert team.sentence.startswith(f"Team {cov.index[0]} has ")


def test_pipeline_review_without_quotas_with_quota_met_and_with_undated_deals(shapes):
    data = shapes["no_quotas"]
    period = data.process.calendar.resolve("current", data.as_of)
    cov = pipeline_coverage(data, period, as_of=data.as_of, by="team")
    h = headlines.pipeline_review(cov)
    assert h.sentence.startswith(f"The data have no quota for {period}, so there is no attainment or coverage")
    assert "Attainment" not in _figures(h) and _figures(h)["Quota"] == "none"
    met = cov.assign(quota=cov["closed_won"] / 2)
    h = headlines.pipeline_review(met)
    assert f"has met its {period} quota: **200.0%** attained" in h.sentence and _figures(h)["Coverage"] == "met"
    data = shapes["open_deals_without_close_dates"]
    cov = pipeline_coverage(data, period, as_of=data.as_of, by="team")
    h = headlines.pipeline_review(cov)
    n = int(cov["undated_deals"].sum())
    assert "even if every open deal dated in the period closed won" in h.sentence  # not: every open deal
    assert h.note.startswith(f"{n} open deals without a close date")


# ---------------------------------------------------------------------------------------- rendered pages
REPORTS = ("01_data_quality", "02_stage_conversion", "03_lead_scoring", "05_pipeline_review")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The four reports on the gallery's export whose open deals have no close date: the gallery's run of that shape
    (`shared_shape_run`: every report of reports.yml, seed 0; under ``make test`` on the worker of
    test_gallery_reports_a, which renders it too)."""
    run = shared_shape_run("open_deals_without_close_dates", tmp_path_factory)
    assert [run.results(n)[0].status for n in REPORTS] == ["ok"] * len(REPORTS), [r.error for r in run.result.results]
    pages = {n: run.page(n) for n in REPORTS}
    return run.folder, pages, (run.result.latest_dir / "index.html").read_text(encoding="utf-8")


def test_each_page_opens_with_its_headline_then_the_box(rendered):
    _, pages, index = rendered
    for name, page in pages.items():
        assert page.count('id="headline"') == 1, name
        soup = BeautifulSoup(page, "html.parser")
        section = soup.find(id="headline")
        assert 3 <= len(section.select(".headline-figure")) <= 6, name
        order = [page.index('class="salesforecast-header"'), page.index('id="headline"')]
        if 'id="read-this-first"' in page:
            order.append(page.index('id="read-this-first"'))
        order.append(page.index("<h2"))
        assert order == sorted(order), name
        assert page_headline(page)[:60] in visible_text(index), name  # the index quotes it


def test_the_pages_say_the_sentences_the_package_computes(rendered):
    folder, pages, _ = rendered
    data = load(folder)
    assert page_headline(pages["01_data_quality"], limit=10**4) == re.sub(
        r"\*\*", "", headlines.data_quality(data, as_of=data.as_of).sentence
    )
    closed = int(data.opportunities["is_closed"].sum())
    assert page_headline(pages["02_stage_conversion"]).startswith(f"On {closed:,} closed deals, the CRM's")
    assert "ROC AUC" in page_headline(pages["03_lead_scoring"])
    report = open_report(folder, period="current")
    cov = pipeline_coverage(report.view, report.period, as_of=report.as_of, by="team")
    expected = headlines.pipeline_review(cov, currency=report.view.process.currency).sentence
    assert page_headline(pages["05_pipeline_review"], limit=10**4) == expected.replace("**", "")
    # the box says the open deals have no close date; the sentence does not claim every open deal is counted
    assert "Open deals without a close date" in pages["05_pipeline_review"]
    assert "every open deal dated in the period" in expected
    rows, total = coverage_rows(pages["05_pipeline_review"])
    assert total is not None and number(total["open deals"]) == rows["open deals"].map(number).sum()
    assert number(total["quota"]) == pytest.approx(rows["quota"].map(number).sum(), abs=len(rows))


def test_gallery_shapes_are_the_ones_named(shapes):
    """The shapes above are what the tests take them for (a guard against a gallery change)."""
    assert shapes["current_state_only"].stage_history.empty and shapes["no_quotas"].quotas.empty
    assert shapes["leads_only"].opportunities.empty
