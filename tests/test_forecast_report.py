"""04_forecast_accuracy on the data a real export holds: 15 months, no teams, a history derived from dates."""

from __future__ import annotations

import html
import re

from salesforecast.datasets import generate
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.snapshots import known_at
from tests.factories import render_report


def test_forecast_report_runs_on_fifteen_months_without_teams(tmp_path):
    """It refused ("no cutoff to replay ... 365 days after the first deal") and then failed without a team column;
    now the history before the first replayed quarter adapts, the quarter ending on the data's last day is closed,
    and the report renders with the team group left out."""
    data, _ = generate(n_opportunities=1200, seed=3, years=2)
    short = history_from_dates(known_at(data, "2024-04-01"))  # 2023-01-02 to 2024-03-31, current state only
    short.opportunities = short.opportunities.drop(columns="team")
    short.forecast_submissions = short.forecast_submissions.drop(columns="team")
    folder = short.to_folder(tmp_path / "crm")
    text = render_report(tmp_path, "04_forecast_accuracy", folder, n_sims=200, as_of=f"{short.as_of:%Y-%m-%d}")
    assert "Traceback" not in text
    # the derived history records no past close dates: the CRM-weighted method says, under the title, what it left out
    box = text[text.index('id="read-this-first"') :]
    assert "CRM-weighted forecast left out" in box
    replayed = re.search(r"Quarters replayed: ([A-Z0-9, ]+)", text).group(1).split(", ")
    assert replayed == ["FY2023Q3", "FY2023Q4", "FY2024Q1"]
    for heading in (
        "Which method to trust",
        "Forecast vs actual",
        "Rep call ratio",
        "Interval coverage",
        "This period",
    ):
        assert heading in text, heading


def test_forecast_report_on_fifteen_months_without_calls_says_what_limits_it(tmp_path):
    """A fresh-eyes run on 15 months with no forecast calls: a recommendation from three quarters read as settled,
    the box repeated the same warnings with different figures, methods showed "-" with no reason, the rep-bias
    section was an empty chart, and on the quarter's last day "This period" forecast the quarter just closed."""
    data, _ = generate(n_opportunities=1200, seed=3, years=2)
    short = history_from_dates(known_at(data, "2024-04-01"))  # ends 2024-03-31, a quarter's last day
    short.forecast_submissions = short.forecast_submissions.iloc[:0]
    folder = short.to_folder(tmp_path / "crm")
    page = render_report(tmp_path, "04_forecast_accuracy", folder, n_sims=200, as_of=f"{short.as_of:%Y-%m-%d}")
    text = html.unescape(page)
    start = text.index('id="read-this-first"')
    box = text[start : text.index("</section>", start)]
    assert "The recommended forecast methods rest on 3 replayed periods (FY2023Q3, FY2023Q4, FY2024Q1)" in box
    # the backtest's warnings and those of the period forecast now each say what they are about
    assert box.count("CRM-weighted forecast left out") == 2, box
    assert "In the replayed periods, the CRM-weighted forecast left out 100% of the open pipeline amount on" in box
    assert "For FY2024Q2, the period forecast now, the CRM-weighted forecast left out 100% of the open" in box
    assert box.count("rests on fewer than 4 earlier periods") == 1, box
    assert "In the replayed periods, the Monte Carlo 80% interval of 3 of the 3 periods rests on fewer than 4" in box
    body = text[text.index("Which method to trust") :]
    assert "(from 3 replayed periods only: the lead may be chance)" in body
    assert "No forecast from submitted commit, submitted best case, bias-corrected commit: they need" in body
    rep_start = body.index("Rep call ratio")
    rep_bias = body[rep_start : body.index("Interval coverage", rep_start)]
    assert "The data have no forecast submissions" in rep_bias and "(no rows)" not in rep_bias
    this_period = body[body.index("This period") :]
    assert "FY2024Q1 ended on 2024-03-31, by the report date" in this_period
    assert "the next quarter, FY2024Q2, from its first day (2024-04-01)" in this_period
