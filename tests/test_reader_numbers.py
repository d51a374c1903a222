"""Numbers for humans (issue 14, item 4): the rendered suite's tables show labels, not names of the code; amounts
whole from 1,000; counts whole; differences of rates in points; one meaning of "bias"; no NaN, None or index labels;
the currency of the process map in the amount headers. The formatter and the registry behind it are unit-tested."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from salesforecast import labels
from salesforecast.datasets import load_sample
from salesforecast.forecast import METHODS
from salesforecast.labels import COLUMNS, PARAMETERS, VALUES, format_value, label
from salesforecast.metrics import METRICS
from salesforecast.process import ProcessError, SalesProcess
from salesforecast.reports import format_table
from salesforecast.schema import read_canonical
from tests.factories import render_report

#: Names of the code a table cell must never show: methods, metrics, code values, parameters (snake_case ones).
#: Column names of the data contract (``close_date``) are not among them: the data-quality report names the
#: columns of the user's files as they are spelled there.
CODE_NAMES = {n for n in (*METHODS, *METRICS, *VALUES, *PARAMETERS) if "_" in n}
SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
CENTS_FROM_1000 = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+\.\d+")
MISSING = re.compile(r"\b(?:NaN|nan|None|NaT|True|False)\b")


def tables(page: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each table a reader sees (not the parameter box of the header): its header cells and its body rows."""
    soup = BeautifulSoup(page, "html.parser")
    for tag in soup(["style", "script"]):
        tag.decompose()
    for box in soup.select(".salesforecast-header"):  # the run's parameters, as report_header lists them
        box.decompose()
    found = []
    for table in soup.find_all("table"):
        head = table.find("thead")
        header = [th.get_text(" ", strip=True) for th in head.find_all("th")] if head else []
        body = table.find("tbody") or table
        rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"])] for tr in body.find_all("tr")]
        found.append((header, [r for r in rows if r]))
    return found


@pytest.fixture(scope="module")
def suite(sample_suite) -> dict[str, str]:
    """The sample's six reports (`salesforecast report` of the default configuration, rendered once a session)."""
    pages = {p.stem: p.read_text(encoding="utf-8") for p in sample_suite.glob("0*.html")}
    assert len(pages) == 6, sorted(pages)
    return pages


def test_no_table_shows_nan_none_booleans_or_names_of_the_code(suite):
    problems = []
    for name, page in suite.items():
        for header, rows in tables(page):
            for h in header:
                if SNAKE.search(h) or MISSING.search(h):
                    problems.append((name, "header", h))
                if not h and rows:  # a pandas index shown: an empty corner above its labels
                    problems.append((name, "empty header (an index?)", header))
            for row in rows:
                for cell in row:
                    if MISSING.search(cell):
                        problems.append((name, "cell", cell[:60]))
                    names = set(SNAKE.findall(cell)) & CODE_NAMES
                    if names:
                        problems.append((name, "code name", sorted(names), cell[:60]))
    assert not problems, problems[:20]


def test_amounts_are_whole_from_1000_and_counts_are_whole(suite):
    count_labels = {c.label for c in COLUMNS.values() if c.kind == "count"}
    problems = []
    for name, page in suite.items():
        for header, rows in tables(page):
            for row in rows:
                problems += [(name, cell) for cell in row if CENTS_FROM_1000.search(cell)]
            for i, h in enumerate(header):
                cells = [r[i] for r in rows if len(r) == len(header) and r[i] not in ("–", "")]
                if cells and all(re.fullmatch(r"-?[\d,]+\.0+", c) for c in cells):  # a count shown as a float
                    problems.append((name, h, cells[:3]))
                if h in count_labels:  # a count column's numbers are whole
                    problems += [(name, h, c) for c in cells if re.fullmatch(r"-?[\d,]*\.\d+", c)]
    assert not problems, problems[:20]


def _table_with(page: str, first_header: str) -> pd.DataFrame:
    for header, rows in tables(page):
        if header and header[0] == first_header and rows:
            return pd.DataFrame([r for r in rows if len(r) == len(header)], columns=header)
    raise AssertionError(f"no table starting with {first_header!r}")


def test_forecast_accuracy_labels_methods_and_keeps_one_meaning_of_bias(suite):
    page = suite["04_forecast_accuracy"]
    board = next(pd.DataFrame(rows, columns=header) for header, rows in tables(page) if "over/under-forecast" in header)
    method_labels = {m.label for m in METHODS.values()}
    assert set(board["method"]) <= method_labels, set(board["method"]) - method_labels
    # the leaderboard's bias is the signed over/under-forecast, with its sign
    signed = [v for v in board["over/under-forecast"] if v != "–"]
    assert signed and all(re.fullmatch(r"[+-]\d+\.\d%|0\.0%", v) for v in signed), signed
    # the reps' calls over bookings are a ratio named so, and no header anywhere says plain "bias"
    calls = _table_with(page, "owner")
    assert "call ratio (call / booked)" in calls.columns and "opening call" in calls.columns
    assert all(h != "bias" for p in suite.values() for header, _ in tables(p) for h in header)
    # the advice names methods by their labels
    advice = _table_with(page, "horizon")["advice"]
    # (a tie names both methods and no winner)
    verdict = advice.str.startswith("trust ") | advice.str.contains("a tie within the intervals between ")
    assert verdict.all() and not advice.str.contains("_").any(), advice.tolist()
    labels_named = [m.label for m in METHODS.values() if advice.str.contains(m.label, regex=False).any()]
    assert labels_named, advice.tolist()


def test_differences_of_rates_are_points_and_days_are_whole(suite):
    outcomes = _table_with(suite["05_pipeline_review"], "deviation")
    for col in ("win rate difference", "difference low (90% interval)", "difference high (90% interval)"):
        assert outcomes[col].str.fullmatch(r"[+-]\d+\.\d pp|0\.0 pp|–").all(), outcomes[col].tolist()
    assert outcomes["median cycle difference (days)"].str.fullmatch(r"[+-]?[\d,]+|–").all()
    stages = _table_with(suite["02_stage_conversion"], "stage")
    assert stages["learned - CRM"].str.fullmatch(r"[+-]\d+\.\d pp|0\.0 pp|–").all()
    assert stages["median days"].str.fullmatch(r"[\d,]+|–").all(), stages["median days"].tolist()
    risky = _table_with(suite["05_pipeline_review"], "deal")
    # the deal lists: flags in words (no True/False column), whole days in stage
    assert risky["also flagged"].str.fullmatch(r"[a-z0-9+ ;]*").all() and "stalled" not in risky.columns
    assert risky["days in stage"].str.fullmatch(r"[\d,]+").all()


def test_the_process_maps_currency_names_the_amount_columns(tmp_path):
    sample = load_sample()
    folder = sample.to_folder(tmp_path / "crm")
    process = folder / "process.yml"
    process.write_text(process.read_text(encoding="utf-8") + "currency: eur\n", encoding="utf-8")
    assert read_canonical(folder).process.currency == "EUR"
    page = render_report(tmp_path, "05_pipeline_review", folder)
    coverage = _table_with(page, "team")
    assert {"quota (EUR)", "closed won (EUR)", "open pipeline (EUR)"} <= set(coverage.columns), coverage.columns
    assert "won deals" in coverage.columns  # a count is no amount
    assert _table_with(page, "deal").columns.str.contains(r"^amount \(EUR\)$").any()
    # the coverage formulas in words under the table, not in column names with "(NaN)"
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "how many times the pipeline covers what is left to win" in text
    assert "(NaN)" not in text and "closed_won" not in text


# ------------------------------------------------------------------------------------------------ the registry
def test_process_currency_is_an_iso_code_kept_through_yaml():
    stages = ["Lead", {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]
    p = SalesProcess.from_dict({"stages": stages, "currency": " usd "})
    assert p.currency == "USD" and SalesProcess.from_dict(p.to_dict()) == p
    assert SalesProcess.from_dict({"stages": stages}).currency is None
    assert "currency" not in SalesProcess.default().to_dict()
    for bad in ("euro", "€", 978, "E1R"):
        with pytest.raises(ProcessError, match=r"currency: must be an ISO 4217 currency code of three letters"):
            SalesProcess.from_dict({"stages": stages, "currency": bad})
    with pytest.raises(ProcessError, match=r"^currency: must be an ISO 4217"):
        SalesProcess(SalesProcess.default().stages, currency="dollars")


def test_format_value_writes_each_kind():
    assert format_value(335975.0, "amount") == "335,975" and format_value(1999.5, "amount") == "2,000"
    assert format_value(12.5, "amount") == "12.50" and format_value(300.0, "amount") == "300"
    assert format_value(242.0, "count") == "242" and format_value(np.int64(13823), "count") == "13,823"
    assert format_value(-0.13, "points") == "-13.0 pp" and format_value(0.031, "points") == "+3.1 pp"
    assert format_value(0.0001, "points") == "0.0 pp"
    assert format_value(-0.139, "signed_fraction") == "-13.9%" and format_value(0.002, "signed_fraction") == "+0.2%"
    assert format_value(0.125, "fraction") == "12.5%" and format_value(12.5, "percent") == "12.5%"
    assert format_value(6.5, "days") == "6" and format_value(24.3, "days") == "24"  # round half to even
    assert format_value(32.3, "signed_days") == "+32" and format_value(-6.6, "signed_days") == "-7"
    assert format_value(-21340.0, "shortfall") == "met" and format_value(287840.0, "shortfall") == "287,840"
    assert format_value(0.4712, "multiple") == "0.47×" and format_value(0.4712, "ratio", precision=3) == "0.471"
    assert format_value(True, "bool") == "yes" and format_value(np.False_, "bool") == "no"
    assert format_value("bias_corrected_commit", "code") == "bias-corrected commit"
    assert format_value(pd.Timestamp("2024-06-30"), "date") == "2024-06-30"
    assert format_value(1.23456, "number", precision=3) == "1.235"
    for kind in labels.KINDS:
        assert format_value(None, kind) == format_value(float("nan"), kind) == format_value(pd.NA, kind) == "–"
    with pytest.raises(ValueError, match="kind: must be one of"):
        format_value(1, "money")


def test_labels_come_from_one_registry():
    assert label("monte_carlo") == METHODS["monte_carlo"].label == "Monte Carlo"
    assert label("wape") == METRICS["wape"].label and label("bias") == "over/under-forecast"
    assert labels.parameter_label("holdout_months") == "holdout (months)"
    assert label("crm_default") == "CRM default probability" and label("source") == "source"  # a column, no parameter
    assert label("p50", "EUR") == "P50 (EUR)" and label("won_deals", "EUR") == "won deals"
    assert label("pct_missing") == "% missing" and label("some_new_column") == "some new column"
    # every label a reader sees is words, not a name of the code
    shown = [label(n) for n in (*COLUMNS, *METHODS, *METRICS, *VALUES)] + list(map(labels.parameter_label, PARAMETERS))
    assert not [s for s in shown if SNAKE.search(s)]
    assert set(c.kind for c in COLUMNS.values()) <= set(labels.KINDS)


def test_format_table_by_registry_dtype_and_override():
    df = pd.DataFrame(
        {
            "method": ["stage_conversion", "<script>x</script>", None],
            "conversions": [242.0, 114.0, np.nan],
            "forecast": [1234567.891, 950.5, np.nan],
            "stalled": [True, False, True],
            "win_rate_diff": [-0.13, 0.02, np.nan],
            "free_text": ["a", None, "b"],
            "misc": [1.23456, 2.0, np.nan],
        }
    )
    page = format_table(df, currency="EUR", kinds={"misc": "ratio"}, precision=1).to_html()
    cells = [[c.get_text(strip=True) for c in tr.find_all("td")] for tr in BeautifulSoup(page, "html.parser")("tr")]
    body = [r for r in cells if r]
    assert body[0] == ["stage conversion", "242", "1,234,568", "yes", "-13.0 pp", "a", "1.2"]
    assert body[1] == ["<script>x</script>", "114", "950.50", "no", "+2.0 pp", "–", "2.0"]
    assert body[2] == ["–", "–", "–", "yes", "–", "b", "–"]
    assert "&lt;script&gt;" in page and "<script>" not in page
    head = [th.get_text(strip=True) for th in BeautifulSoup(page, "html.parser").find("thead").find_all("th")]
    assert head == [
        "method",
        "conversions",
        "forecast (EUR)",
        "stalled",
        "win rate difference",
        "free text",
        "misc",
    ]
    # the table's attrs carry the currency and the metrics; an integer column of no known kind is a count
    t = pd.DataFrame({"wape": [0.125], "bias": [-0.05], "widgets": [np.int64(12345)], "p90": [5000.4]})
    t.attrs.update(metrics=["wape", "bias"], currency="USD")
    html = format_table(t).to_html()
    assert "12.5%" in html and "-5.0%" in html and "12,345" in html and "P90 (USD)" in html and "5,000" in html
    assert "WAPE" in html and "over/under-forecast" in html
    # an index, when asked for, is escaped and its missing labels dashed
    shown = format_table(pd.DataFrame({"n": [1]}, index=pd.Index(["<b>"], name="x")), index=True).to_html()
    assert "&lt;b&gt;" in shown


def test_format_table_says_what_its_dashes_mean_in_a_caption():
    df = pd.DataFrame({"method": ["run_rate"], "p50": [np.nan]})
    page = format_table(df, caption="– where a method gives <no> interval").to_html()
    assert "<caption>– where a method gives &lt;no&gt; interval</caption>" in page
    assert "(no rows)" in format_table(df.iloc[:0], caption="ignored").to_html()


def test_a_salesforce_exports_organisation_currency_is_the_process_maps(tmp_path):
    from salesforecast.io.salesforce import read_salesforce
    from salesforecast.schema import DataFileError
    from tests.test_io_salesforce import opp_folder, write_csv

    opp_folder(tmp_path)
    assert read_salesforce(tmp_path).process.currency is None  # no Organization.csv: no currency
    write_csv(
        tmp_path / "Organization.csv", ["Id", "FiscalYearStartMonth", "DefaultCurrencyIsoCode"], [["1", "2", "eur"]]
    )
    p = read_salesforce(tmp_path).process
    assert p.currency == "EUR" and p.calendar.start_month == 2
    assert read_salesforce(tmp_path, process="salesforce").process.currency is None  # a process given: its own
    write_csv(tmp_path / "Organization.csv", ["Id", "DefaultCurrencyIsoCode"], [["1", "Euro<s>"]])
    with pytest.raises(DataFileError, match=r"Organization.csv: DefaultCurrencyIsoCode 'Euro<s>' is not a currency"):
        read_salesforce(tmp_path)


def test_format_amount_for_sentences_and_headline_figures():
    from salesforecast.labels import format_amount

    assert format_amount(335975.0) == "335,975" and format_amount(335975.0, "USD") == "$335,975"
    assert format_amount(1968200, "GBP", short=True) == "£1.97M" and format_amount(999_999, short=True) == "1M"
    assert format_amount(500_000, "EUR", short=True) == "€500k" and format_amount(12_500, short=True) == "12.5k"
    assert format_amount(-1_740_000, "EUR", short=True) == "-€1.74M" and format_amount(950, "SEK") == "950 SEK"
    assert format_amount(np.nan, "EUR") == "–"
