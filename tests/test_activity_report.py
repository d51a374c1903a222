"""The pipeline review's section "What was done at each step": rendered on a CRM with activities and exit criteria,
and on the sample (no activities: one sentence on how to add them)."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pandas as pd

from salesforecast import review
from salesforecast.datasets import load_sample
from tests.factories import render_report
from tests.test_activities import synthetic_activities, with_criteria

HOSTILE = "<b>Rep</b> & Co"


def step_crm():
    """The sample with synthetic activities, exit criteria on two stages, and a rep whose name is markup."""
    data = load_sample()
    first = data.opportunities["owner"].iloc[0]
    opps = data.opportunities.assign(owner=data.opportunities["owner"].replace(first, HOSTILE))
    return replace(data, opportunities=opps, process=with_criteria(data.process), activities=synthetic_activities(data))


def _section(page: str) -> str:
    start = page.index('id="What-was-done-at-each-step"')
    return page[start:]


def test_the_section_renders_after_the_others_with_its_tables_and_the_headline_figure(tmp_path):
    folder = step_crm().to_folder(tmp_path / "crm")
    page = render_report(tmp_path, "05_pipeline_review", folder)
    assert page.index('id="Deals-at-risk"') < page.index('id="What-was-done-at-each-step"')
    part = _section(page)
    for text in (
        "share met",
        "Qualification: share met",
        "Open deals without activity",
        "Does meeting the exit criteria pay?",
        "90% interval",
        "First response to new leads",
        "at least 1 meeting; follow up within 3 days of the meeting",
    ):
        assert html.escape(text) in part, text
    assert "NaN" not in part and "None" not in part
    assert HOSTILE not in page and html.escape(HOSTILE) in page  # a rep's name is text, never markup
    headline = re.search(r'<section [^>]*id="headline".*?</section>', page, re.S).group(0)
    assert "Exit criteria met" in headline or "Exit criteria were met" in headline


def test_the_sample_page_shows_the_section_or_says_how_to_add_what_it_needs(sample_suite):
    (page,) = sample_suite.glob("05_pipeline_review*.html")
    part = _section(page.read_text(encoding="utf-8"))
    sample = load_sample()
    if sample.activities.empty or not sample.process.exit_criteria:  # the sample as it was before it had activities
        assert "so what was done at each step" in part or "The process map has no exit criteria" in part
        if sample.activities.empty:
            assert "<table" not in part.split("</h2>", 1)[1]  # no empty tables
    else:
        assert "Does meeting the exit criteria pay?" in part and "share met" in part and "NaN" not in part


def test_without_activities_or_criteria_one_sentence_says_how_to_add_them():
    data = load_sample()
    bare = replace(data, activities=data.activities.iloc[:0])
    neither = review.step_review(replace(bare, process=with_criteria(data.process, {})), data.as_of)
    assert neither.note.startswith("The data have no activities and the process map no exit criteria, so")
    assert "activity_id, occurred_at, type" in neither.note and "exit_criteria:" in neither.note
    assert (neither.criteria, neither.gaps, neither.outcomes, neither.responses) == (None,) * 4
    no_acts = review.step_review(replace(bare, process=with_criteria(data.process)), data.as_of)
    assert no_acts.note.startswith("The data have no activities, so") and "exit_criteria" not in no_acts.note


def test_names_in_the_criteria_sentence_are_escaped():
    rows = pd.DataFrame({"stage": ["<i>S</i>"], "completed": [True], "met": pd.array([True], dtype="boolean")})
    rows.attrs["criteria"] = {"<i>S</i>": "at least 1 <meeting>"}
    sentence = review.StepReview(None, rows, None, None, None).criteria_sentence()
    assert "<i>" not in sentence and "&lt;i&gt;S&lt;/i&gt;" in sentence and "1 of the 1" in sentence
    link = rows.assign(stage="[x](javascript:y)")
    link.attrs["criteria"] = {"[x](javascript:y)": "*a*"}
    sentence = review.StepReview(None, link, None, None, None).criteria_sentence()
    assert r"\[x\]\(javascript:y\)" in sentence and r"\*a\*" in sentence  # Markdown makes no link, no emphasis


def test_without_exit_criteria_the_gaps_show_and_a_sentence_says_how_to_add_them():
    data = load_sample()
    plain = replace(data, process=with_criteria(data.process, {}), activities=synthetic_activities(data))
    r = review.step_review(plain, data.as_of)
    assert r.note.startswith("The process map has no exit criteria") and "exit_criteria:" in r.note
    assert r.criteria is None and r.gaps is not None and r.gap_sentence().startswith("**")
    assert r.response_sentence().startswith("**First response")


def test_the_headline_gets_the_share_met_as_a_figure_or_in_the_note_and_the_stages_that_clearly_pay():
    from salesforecast import headlines
    from salesforecast.movement import pipeline_coverage

    data = step_crm()
    steps = review.step_review(data, "2025-05-15")
    met, told = steps.met()
    assert 0 < met < told
    share = f"{100 * met / told:.1f}%"
    cov = pipeline_coverage(data, "FY2025Q2", as_of="2025-05-15", by="team")  # six figures: the share goes to the note
    h = headlines.pipeline_review(cov, steps=steps)
    assert len(h.figures) == 6 and f"Exit criteria were met on {share} of {told:,} completed stage visits." in h.note
    few = headlines.pipeline_review(cov.iloc[:1], steps=steps)  # one team: room for the figure
    assert [f.value for f in few.figures if f.label == "Exit criteria met"] == [share]
    # a stage whose interval excludes 0 is named in the note; one that cannot tell is not
    clear = steps.outcomes.assign(win_rate_diff=[0.12, -0.02], ci_low=[0.05, -0.1], ci_high=[0.2, 0.06])
    h = headlines.pipeline_review(cov, steps=replace(steps, outcomes=clear))
    assert "Deals that met the Qualification exit criteria had a win rate 12.0 pp higher" in h.note
    assert "Proposal/Price Quote exit" not in h.note
    assert headlines.pipeline_review(cov).note == headlines.pipeline_review(cov, steps=None).note


def test_the_pays_table_writes_intervals_on_one_line_and_the_verdicts_escaped():
    import numpy as np

    outcomes = pd.DataFrame(
        {
            "deals_met": [40, 3],
            "deals_not_met": [50, 60],
            "deals_compared": [80, 0],
            "win_rate_matched": [0.3, np.nan],
            "win_rate_comparable": [0.2, np.nan],
            "win_rate_diff": [0.1, np.nan],
            "ci_low": [-0.0004, np.nan],
            "ci_high": [0.152, np.nan],
            "cycle_days_diff": [-3.0, np.nan],
            "cycle_ci_low": [-8.4, np.nan],
            "cycle_ci_high": [-0.4, np.nan],
            "verdict": ["v <1>", "Too few"],
        },
        index=pd.Index(["<S>", "T"], name="stage"),
    )
    r = review.StepReview(None, None, outcomes, None, None)
    table = r.pays_table()
    assert table["win_rate_interval"].tolist() == ["0.0\u00a0to\u00a0+15.2\u00a0pp", "–"]
    assert table["cycle_interval"].tolist() == ["-8\u00a0to\u00a00", "–"]
    assert r.pays_verdicts() == "- **&lt;S&gt;**: v &lt;1&gt;\n- **T**: Too few"
