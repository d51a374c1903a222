"""04_forecast_accuracy on the data a real export holds: 15 months, no teams, a history derived from dates."""

from __future__ import annotations

import re
from pathlib import Path

from salesforecast.datasets import generate
from salesforecast.datasets.shapes import history_from_dates
from salesforecast.reports import run_reports
from salesforecast.snapshots import known_at

CONFIG = """\
notebooks: {notebooks}
reports:
  - notebook: 04_forecast_accuracy
    title: Forecast accuracy
    parameters: {{}}
"""


def test_forecast_report_runs_on_fifteen_months_without_teams(tmp_path):
    """It refused ("no cutoff to replay ... 365 days after the first deal") and then failed without a team column;
    now the history before the first replayed quarter adapts, the quarter ending on the data's last day is closed,
    and the report renders with the team group left out."""
    data, _ = generate(n_opportunities=1200, seed=3, years=2)
    short = history_from_dates(known_at(data, "2024-04-01"))  # 2023-01-02 to 2024-03-31, current state only
    short.opportunities = short.opportunities.drop(columns="team")
    short.forecast_submissions = short.forecast_submissions.drop(columns="team")
    folder = short.to_folder(tmp_path / "crm")
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    config = tmp_path / "reports.yml"
    config.write_text(CONFIG.format(notebooks=notebooks), encoding="utf-8")
    as_of = f"{short.as_of:%Y-%m-%d}"
    result = run_reports(config, tmp_path / "out", params={"source": str(folder), "n_sims": 200}, jobs=1, as_of=as_of)
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("04_forecast_accuracy*.html")
    text = page.read_text(encoding="utf-8")
    assert "Traceback" not in text
    # the derived history records no past close dates: the CRM-weighted method says, under the title, what it left out
    box = text[text.index('id="read-this-first"') :]
    assert "CRM-weighted forecast left out" in box
    replayed = re.search(r"Quarters replayed: ([A-Z0-9, ]+)", text).group(1).split(", ")
    assert replayed == ["FY2023Q3", "FY2023Q4", "FY2024Q1"]
    for heading in ("Which method to trust", "Forecast vs actual", "Rep bias", "Interval coverage", "This period"):
        assert heading in text, heading
