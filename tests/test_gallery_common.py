"""What the gallery's report tests share: run every report on a shape, check each page, read its headline numbers.

Every report on every shape of `salesforecast.datasets.gallery.SHAPES` either renders an honest report (runner
status ``ok``) or a one-page "what this report needs" (status ``needs``, ``<section id="report-needs">``), never a
traceback, never a missing value shown as a number; the headline numbers are checked against a plain pandas reading
of the shape's CSV files. The shapes are spread over ``test_gallery_reports_*.py`` so that ``--dist loadfile``
runs them on two workers. The tests here check the checks themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup

from salesforecast import pages
from salesforecast.datasets.gallery import SHAPES, write_shape
from salesforecast.forecast import METHODS
from salesforecast.reports import DEFAULT_CONFIG, RunResult, run_reports

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
STATUSES = ("ok", "needs")
#: A value a table cell or a printed line shows where a number should be: pandas' and numpy's missing markers.
_MISSING_CELL = re.compile(r"(?i)^[-+]?(nan|inf|infinity|nat|<na>|none|null)%?$")
_MISSING_WORD = re.compile(r"(?<![\w(.'\"])(nan|NaN|-?inf|NaT|<NA>)(?![\w).'\"])")
_ERROR_LINE = re.compile(r"\b[A-Z]\w*(?:Error|Exception): ")


@dataclass
class ShapeRun:
    """The reports run on one shape: the shape's folder and the runner's result."""

    name: str
    folder: Path
    result: RunResult

    def results(self, notebook: str) -> list:
        """The results of one notebook's parameter sets."""
        return [r for r in self.result.results if r.spec.notebook == notebook]

    def page(self, notebook: str, index: int = 0) -> str:
        """The HTML of a notebook's (first) report."""
        res = self.results(notebook)[index]
        assert res.html is not None, (self.name, res.spec.name, res.status, res.error)
        return Path(res.html).read_text(encoding="utf-8")


def run_shape(name: str, tmp: Path, seed: int = 0) -> ShapeRun:
    """Write a shape and run every report of the default configuration on it (one report at a time)."""
    folder = write_shape(name, tmp / name, seed=seed)
    params = {"source": str(folder), **SHAPES[name].parameters}
    result = run_reports(DEFAULT_CONFIG, tmp / "out", params=params, jobs=1, echo=lambda _: None)
    return ShapeRun(name, folder, result)


_SHARED_RUNS: dict[str, ShapeRun] = {}


def shared_shape_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> ShapeRun:
    """`run_shape` (seed 0) once per test process: the gallery's ``shape_run`` and other modules that read the same
    shape's reports (test_report_headlines) share one run. Read only. Under ``make test`` the modules that share a
    run are put on one xdist worker (tests/conftest.py, ``SHARED_GROUPS``)."""
    if name not in _SHARED_RUNS:
        _SHARED_RUNS[name] = run_shape(name, tmp_path_factory.mktemp(name))
    return _SHARED_RUNS[name]


# ----------------------------------------------------------------------------------------------- page checks
def visible_text(page: str) -> str:
    """The text a reader sees (no style or script), with runs of white space as one space."""
    soup = BeautifulSoup(page, "html.parser")
    for tag in soup(["style", "script"]):
        tag.decompose()
    return re.sub(r"\s+", " ", soup.get_text(" "))


def missing_shown_as_numbers(page: str) -> list[str]:
    """Table cells and printed words that show a missing value (``nan``, ``inf``, ``NaT``...) as a number."""
    soup = BeautifulSoup(page, "html.parser")
    for tag in soup(["style", "script"]):
        tag.decompose()
    found = [c.get_text(strip=True) for c in soup.find_all(["td", "th"]) if _MISSING_CELL.match(c.get_text(strip=True))]
    for cell in soup.find_all(["td", "th"]):
        cell.decompose()
    found += _MISSING_WORD.findall(soup.get_text(" "))
    return found


def headline_problems(page: str) -> list[str]:
    """A rendered report opens with its answer: one headline, right after the header, then the box (issue 14)."""
    starts = [m.start() for m in re.finditer(r'<section[^>]*\bid="headline"', page)]
    if len(starts) != 1:
        return [f"{len(starts)} headline sections (one expected)"]
    header = page.find('class="salesforecast-header"')
    box = page.find('id="read-this-first"')
    first_h2 = page.find("<h2", header)
    out = []
    if not header < starts[0] < (first_h2 if first_h2 >= 0 else len(page)):
        out.append("the headline is not between the header and the first section")
    if box >= 0 and not starts[0] < box < (first_h2 if first_h2 >= 0 else len(page)):
        out.append("the read-this-first box does not follow the headline")
    if not (pages.page_text(page[starts[0] : page.find("</section>", starts[0])]).strip()):
        out.append("an empty headline")
    return out


def page_problems(page: str, status: str) -> list[str]:
    """What is wrong with a rendered page of a report whose runner status is `status` (empty: nothing)."""
    problems = []
    text = visible_text(page)
    if "Traceback" in page:
        problems.append("a traceback")
    soup = BeautifulSoup(page, "html.parser")
    if soup.find(attrs={"data-mime-type": "application/vnd.jupyter.stderr"}) is not None:
        problems.append("an error output")
    error = _ERROR_LINE.search(text)
    if error:
        problems.append(f"an error line: {error.group(0).strip()}")
    needs_section = re.search(r"<section[^>]*\bid=[\"']report-needs[\"']", page) is not None
    if status == "needs" and not needs_section:
        problems.append('status "needs" without <section id="report-needs">')
    if status == "ok" and needs_section:
        problems.append('status "ok" with a "what this report needs" section')
    missing = missing_shown_as_numbers(page)
    if missing:
        problems.append(f"missing values shown as numbers: {missing[:5]}")
    problems += [f"for a reader: {p.what}: {p.text}" for p in pages.page_problems(page)]  # tests/test_reader_pages.py
    return problems


def outcome_problems(run: ShapeRun, notebook: str) -> list[str]:
    """Every way the reports of `notebook` on the shape are not honest (status, page)."""
    results = run.results(notebook)
    if not results:
        return [f"{notebook}: no report ran"]
    out = []
    for res in results:
        where = f"{run.name} / {res.spec.name}"
        if res.status not in STATUSES:
            first = (res.error or "").splitlines()[0] if res.error else ""
            out.append(f"{where}: status {res.status!r}: {first}")
            continue
        page = Path(res.html).read_text(encoding="utf-8")
        out += [f"{where}: {p}" for p in page_problems(page, res.status)]
        if res.status == "ok":  # a rendered report opens with its answer
            out += [f"{where}: {p}" for p in headline_problems(page)]
    return out


# ------------------------------------------------------------------------------------- reading the reports
def table_after(page: str, heading: str) -> pd.DataFrame:
    """The first table after the heading starting with `heading`, as text cells (columns from its header row)."""
    soup = BeautifulSoup(page, "html.parser")
    head = next((h for h in soup.find_all(["h2", "h3"]) if h.get_text(strip=True).startswith(heading)), None)
    assert head is not None, f"no heading {heading!r}"
    table = head.find_next("table")
    assert table is not None, f"no table after {heading!r}"
    columns = [th.get_text(strip=True) for th in table.find("thead").find_all("th")]
    rows = [[td.get_text(strip=True) for td in tr.find_all(["td", "th"])] for tr in table.find("tbody").find_all("tr")]
    return pd.DataFrame(rows, columns=columns)


def coverage_rows(page: str) -> tuple[pd.DataFrame, pd.Series | None]:
    """05's attainment table without its total row, and the total row (None under a table of one row)."""
    shown = table_after(page, "Attainment and coverage")
    is_total = shown.iloc[:, 0].str.startswith("Total (all")
    assert is_total.sum() == (1 if len(shown) > 2 else 0) and (not is_total.any() or is_total.iloc[-1]), shown
    return shown[~is_total].reset_index(drop=True), (shown[is_total].iloc[0] if is_total.any() else None)


def number(text: str) -> float:
    """A number as `salesforecast.reports.format_table` shows it (``1,234.50``, ``12.5%``, ``–`` for none)."""
    text = text.strip().replace(",", "")
    if text in ("–", ""):
        return float("nan")
    if text.endswith(" pp"):  # percentage points
        return float(text[:-3]) / 100.0
    return float(text.rstrip("%×")) / (100.0 if text.endswith("%") else 1.0)


def header_as_of(page: str) -> pd.Timestamp:
    """The report date the header states (``data as of 2024-11-14 16:45``)."""
    m = re.search(r"data as of (\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2})?)", visible_text(page))
    assert m, "no 'data as of' in the header"
    return pd.Timestamp(m.group(1))


def period_bounds(label: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Start and exclusive end of ``FY2024Q4`` (a calendar fiscal year, as the generator's) or ``2024-11``."""
    m = re.fullmatch(r"FY(\d{4})Q([1-4])", label)
    period = pd.Period(f"{m.group(1)}Q{m.group(2)}", freq="Q") if m else pd.Period(label, freq="M")
    return period.start_time, (period + 1).start_time


def read_csv(folder: Path, table: str) -> pd.DataFrame | None:
    """A table of a canonical folder as plain pandas reads it (None when the folder has no such file)."""
    path = folder / f"{table}.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"opportunity_id": "str", "owner": "str"}, keep_default_na=True)


def check_data_quality_counts(run: ShapeRun) -> None:
    """01: rows read and accepted per table, against the files' row counts (every shape's files load whole)."""
    (res,) = run.results("01_data_quality")
    assert res.status == "ok", (run.name, res.status, res.error)  # the data-quality report needs only the files
    shown = table_after(run.page("01_data_quality"), "Rows read, accepted and quarantined").set_index("table")
    for table in ("opportunities", "stage_history", "leads", "forecast_submissions", "quotas"):
        df = read_csv(run.folder, table)
        rows = 0 if df is None else len(df)
        read = number(shown.loc[table, "read"]) if table in shown.index else 0.0
        accepted = number(shown.loc[table, "accepted"]) if table in shown.index else 0.0
        assert read == rows, (run.name, table, read, rows)
        assert accepted == rows, (run.name, table, "accepted", accepted, rows)


def check_pipeline_review_numbers(run: ShapeRun) -> None:
    """05: closed won and open pipeline of the period (count and amount), against pandas on opportunities.csv."""
    page = _skip_unless_ok(run, "05_pipeline_review")
    m = re.search(r"Pipeline review (\S+) · data as of", visible_text(page))
    assert m, "no period in the header"
    start, end = period_bounds(m.group(1))
    as_of = header_as_of(page)
    opps = read_csv(run.folder, "opportunities")
    for col in ("created_at", "close_date"):
        opps[col] = pd.to_datetime(opps[col], format="ISO8601")
    in_period = opps["close_date"].ge(start) & opps["close_date"].lt(end)
    won = opps["is_won"].astype(bool) & in_period & opps["close_date"].le(as_of)
    open_ = ~opps["is_closed"].astype(bool) & in_period & opps["created_at"].le(as_of + pd.Timedelta(minutes=1))
    shown, total_row = coverage_rows(page)
    total = {col: shown[col].map(number).sum() for col in ("closed won", "won deals", "open pipeline", "open deals")}
    if total_row is not None:  # the total row: the sums of the rows (amounts shown whole, each row rounded)
        for col, value in total.items():
            assert number(total_row[col]) == pytest.approx(value, abs=0.5 * (len(shown) + 1)), (run.name, col)
    assert total["won deals"] == int(won.sum()), (run.name, total, int(won.sum()))
    whole = 0.5 * len(shown)  # amounts from 1,000 are shown whole
    assert total["closed won"] == pytest.approx(float(opps.loc[won, "amount"].sum()), abs=whole), run.name
    assert total["open deals"] == int(open_.sum()), (run.name, total, int(open_.sum()))
    assert total["open pipeline"] == pytest.approx(float(opps.loc[open_, "amount"].sum()), abs=whole), run.name


def _skip_unless_ok(run: ShapeRun, notebook: str) -> str:
    """The page of the notebook's first report; skip when it did not render (the outcome test checks why)."""
    res = run.results(notebook)[0]
    if res.status != "ok":
        pytest.skip(f"{notebook} on {run.name}: {res.status} (its page is checked by the outcome test)")
    return run.page(notebook)


def check_stage_conversion_counts(run: ShapeRun) -> None:
    """02: deals that entered each stage, and those of them won, against pandas on stage_history.csv."""
    page = _skip_unless_ok(run, "02_stage_conversion")
    shown = table_after(page, "Stage by stage").set_index("stage")
    hist = read_csv(run.folder, "stage_history")
    opps = read_csv(run.folder, "opportunities")
    won_ids = opps.loc[opps["is_won"].astype(bool), "opportunity_id"]
    entered = hist.groupby("stage")["opportunity_id"].nunique().reindex(shown.index, fill_value=0)
    won = hist[hist["opportunity_id"].isin(won_ids)].groupby("stage")["opportunity_id"].nunique()
    won = won.reindex(shown.index, fill_value=0)
    assert shown["entered"].map(number).tolist() == entered.tolist(), (run.name, "entered")
    assert shown["won"].map(number).tolist() == won.tolist(), (run.name, "won")


def check_forecast_accuracy_numbers(run: ShapeRun) -> None:
    """04, this period: the reps' submitted commit (each owner's latest call at the cutoff, summed) and, with a year
    of data before the period, the seasonal naive forecast (closed won in the same quarter a year earlier)."""
    page = _skip_unless_ok(run, "04_forecast_accuracy")
    shown = table_after(page, "This period").set_index("method")
    names = {m.label: name for name, m in METHODS.items()}  # the page shows the methods' labels
    shown.index = [names.get(label, label) for label in shown.index]
    period, cutoff = shown["period"].iloc[0], pd.Timestamp(shown["cutoff"].iloc[0])
    start, end = period_bounds(period)
    opps = read_csv(run.folder, "opportunities")
    for col in ("created_at", "close_date"):
        opps[col] = pd.to_datetime(opps[col], format="ISO8601")
    year_start, year_end = start - pd.DateOffset(years=1), end - pd.DateOffset(years=1)
    checked = 0
    if opps["created_at"].min() <= year_start and "seasonal_naive" in shown.index:
        won = opps["is_won"].astype(bool) & opps["close_date"].ge(year_start) & opps["close_date"].lt(year_end)
        assert number(shown.loc["seasonal_naive", "forecast"]) == pytest.approx(opps.loc[won, "amount"].sum(), abs=0.5)
        checked += 1
    subs = read_csv(run.folder, "forecast_submissions")
    if subs is not None and "submitted_commit" in shown.index:
        subs["submitted_at"] = pd.to_datetime(subs["submitted_at"], format="ISO8601")
        calls = subs[(subs["period"] == period) & (subs["category"] == "commit") & subs["submitted_at"].le(cutoff)]
        if len(calls):
            latest = calls.sort_values("submitted_at", kind="stable").groupby("owner")["amount"].last().sum()
            assert number(shown.loc["submitted_commit", "forecast"]) == pytest.approx(latest, abs=0.5), run.name
            checked += 1
    if not checked:
        pytest.skip(f"04 on {run.name}: neither a year of data before {period} nor calls for it")


def readme_table(first_header: str) -> pd.DataFrame:
    """The table of the README's "Your own data" section whose header starts with ``| first_header |`` (text cells)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Your own data") :]
    section = section[: section.index("\n## ", 1)]
    block = section[section.index(f"\n| {first_header} |") + 1 :]
    lines = []
    for line in block.splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return pd.DataFrame(rows[2:], columns=[c.strip("`") for c in rows[0]])


def readme_outcomes() -> pd.DataFrame:
    """The README's table of outcomes (section "Your own data"): shape x notebook -> ``ok`` / ``needs``."""
    table = readme_table("shape")
    table["shape"] = table["shape"].str.strip("`")
    return table.set_index("shape")[NOTEBOOKS]


def check_readme_row(run: ShapeRun) -> None:
    """The README's row for the shape says what the reports did (a report with several parameter sets: the first)."""
    expected = readme_outcomes().loc[run.name]
    actual = {nb: run.results(nb)[0].status for nb in NOTEBOOKS}
    wrong = {nb: (expected[nb], actual[nb]) for nb in NOTEBOOKS if expected[nb] != actual[nb]}
    row = " | ".join([f"`{run.name}`", *(actual[nb] for nb in NOTEBOOKS)])
    assert not wrong, f"README says / gallery did: {wrong}; the row as run: | {row} |"


# ----------------------------------------------------------------------------------------------- the checks' tests
def test_missing_values_shown_as_numbers_are_found_and_prose_is_not():
    page = (
        "<table><thead><tr><th>x</th></tr></thead><tbody><tr><td>nan</td></tr><tr><td>NaN%</td></tr>"
        "<tr><td>–</td></tr><tr><td>12.5%</td></tr><tr><td>inf</td></tr></tbody></table>"
        "<pre>coverage is undefined (NaN) when quota &lt;= closed won; information; total = nan</pre>"
    )
    assert missing_shown_as_numbers(page) == ["nan", "NaN%", "inf", "nan"]


def test_headline_problems_need_one_headline_after_the_header_and_before_the_box():
    header, first = '<div class="salesforecast-header">H</div>', "<h2>Section</h2>"
    headline = '<section id="headline"><p>We make it.</p></section>'
    box = '<section id="read-this-first"><h2>Read this first</h2></section>'
    assert headline_problems(header + headline + box + first) == []
    assert headline_problems(header + first) == ["0 headline sections (one expected)"]
    misplaced = "the headline is not between the header and the first section"
    assert headline_problems(header + first + headline) == [misplaced]
    assert headline_problems(header + box + headline + first) == [  # the box's own heading comes first
        misplaced,
        "the read-this-first box does not follow the headline",
    ]


def test_page_problems_name_tracebacks_errors_and_the_needs_contract():
    needs = '<section id="report-needs"><h1>What this report needs</h1><p>leads</p></section>'
    assert page_problems(needs, "needs") == []
    assert page_problems(needs, "ok") == ['status "ok" with a "what this report needs" section']
    assert page_problems("<p>fine</p>", "needs") == ['status "needs" without <section id="report-needs">']
    bad = page_problems("<pre>Traceback (most recent call last)\nKeyError: 'created_at'</pre>", "ok")
    assert bad[0] == "a traceback" and bad[1].startswith("an error line: KeyError:")
    error_output = '<div data-mime-type="application/vnd.jupyter.stderr"><pre>oops</pre></div>'
    style_only = "<style>.x[data-mime-type='application/vnd.jupyter.stderr'] {}</style><p>fine</p>"
    assert page_problems(error_output, "ok") == ["an error output"] and page_problems(style_only, "ok") == []


def test_numbers_read_as_the_reports_format_them():
    assert number("1,234.50") == 1234.5 and number("12.5%") == pytest.approx(0.125)
    assert number("–") != number("–")  # missing
    assert period_bounds("FY2024Q4") == (pd.Timestamp("2024-10-01"), pd.Timestamp("2025-01-01"))
    assert period_bounds("2024-11") == (pd.Timestamp("2024-11-01"), pd.Timestamp("2024-12-01"))
