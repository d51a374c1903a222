"""The report suite end to end: every notebook is thin and parameterised; a run on the sample renders every
report with its headings and charts; the pages load in a real headless Chromium without console errors; and
rep, account, product and team names that carry HTML or script are shown as text, never run, also where they
reach a report's read-this-first box (a note of the load, a warning raised in a cell).

The browser tests need Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` package (a dev
dependency); without them they skip with a message saying how to enable them.
"""

import ast
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from salesforecast.datasets import generate
from salesforecast.reports import DEFAULT_CONFIG, run_reports

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
ARTIFACTS = REPO / "reports" / "test-artifacts"
COMMON = ["source", "process", "as_of"]
HEADINGS = {
    "01_data_quality": [
        "Notes from the import",
        "Rows read, accepted and quarantined",
        "Stage names and the process map",
    ],
    "02_stage_conversion": ["Stage by stage", "Funnel", "Where deals go next", "Are the CRM", "Segments"],
    "03_lead_scoring": ["How well it ranks", "Priority tiers", "What drives the score", "Open leads, ranked"],
    "04_forecast_accuracy": [
        "The forecast call: this period by team and rep",
        "Which method to trust, and when",
        "Forecast vs actual, week by week",
        "Rep call ratio",
        "Interval coverage",
        "This period: where the quarter is likely to land",
    ],
    "05_pipeline_review": [
        "Attainment and coverage",
        "How the pipeline moved",
        "Deals at risk",
        "Does following the map pay?",
    ],
}
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
#: A note of the load naming a hostile rep: it opens every report of the hostile run, in the read-this-first box.
HOSTILE_NOTE = f"Owner {SCRIPT} is known by a user id only."
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None
        tree = ast.parse(cell.source)
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in ast.walk(tree))
    for line in code[0].source.splitlines():
        target, _, rest = line.partition("=")
        assert ":" in target and "  # " in rest, line
        ast.literal_eval(rest.split("  # ")[0].strip())
    params = papermill.inspect_notebook(str(path))
    assert list(params)[:3] == COMMON
    assert params["source"]["default"] == '"sample"'
    assert all(p["help"] for p in params.values())
    text = path.read_text(encoding="utf-8")
    assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Reports on a CRM whose names carry markup: reps, a team, accounts, products."""
    data, _ = generate(n_opportunities=800, seed=11, years=2)
    owners = sorted(data.opportunities["owner"].unique())
    rename = {owners[0]: SCRIPT, owners[1]: IMG, owners[2]: 'O"Neil & <b>Sons</b>'}
    for table in ("opportunities", "leads", "forecast_submissions", "quotas"):
        df = getattr(data, table)
        if "owner" in df.columns:
            df["owner"] = df["owner"].replace(rename)
    opps = data.opportunities
    opps["account_id"] = opps["account_id"].where(opps.index % 7 != 0, IMG)
    opps["product"] = opps["product"].where(opps.index % 5 != 0, SCRIPT)
    opps["team"] = opps["team"].replace({opps["team"].iloc[0]: "<i>EMEA</i>"})
    # a lead column named like a script that gives the outcome away: the leakage warning names it
    data.leads[SCRIPT] = data.leads["converted"].map({True: "won it", False: "not yet"})
    data.notes = (HOSTILE_NOTE,)
    folder = data.to_folder(tmp_path_factory.mktemp("hostile") / "crm")
    out = tmp_path_factory.mktemp("hostile-run")
    result = run_reports(DEFAULT_CONFIG, out, params={"source": str(folder)}, jobs=2)
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    return out / "latest"


def test_lead_scoring_report_says_so_when_no_lead_is_open(tmp_path):
    """Every lead young at the report date is gone: the open-leads cell said KeyError 'created_at' and lost the
    whole report; now it renders, with a sentence in place of the table."""
    data, _ = generate(n_opportunities=800, seed=11, years=2)
    as_of = str(data.as_of.date())
    data.leads = data.leads[data.leads["created_at"] <= pd.Timestamp(as_of) - pd.Timedelta(days=180)]
    folder = data.to_folder(tmp_path / "crm")
    result = run_reports(
        DEFAULT_CONFIG, tmp_path / "out", only=["03_lead_scoring"], params={"source": str(folder)}, jobs=1, as_of=as_of
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob("03_lead_scoring*.html")
    text = page.read_text(encoding="utf-8")
    assert f"No open leads at {as_of}" in text and "nothing to rank" in text
    assert "Open leads, ranked" in text and "Priority tiers" in text and "Traceback" not in text


def test_every_report_renders_on_the_sample(sample_suite):
    """The sample's run of reports.yml (conftest's `sample_suite`, rendered once per session; it checks exit 0)."""
    assert {p.stem for p in NOTEBOOKS} == set(HEADINGS)  # a new notebook gets its headings checked here
    for stem, headings in HEADINGS.items():
        page = (sample_suite / f"{stem}.html").read_text(encoding="utf-8")
        for heading in headings:
            assert heading in page, (stem, heading)
        assert "Traceback" not in page
        assert "<script src=" not in page
        assert page.count("data:image/png;base64") >= 1  # charts are embedded in the page
        # the sample holds nothing that limits its numbers (no note, no warning): no read-this-first box
        assert 'id="read-this-first"' not in page, (stem, page[page.find('id="read-this-first"') :][:2000])


def test_hostile_names_are_escaped_in_the_html(hostile_run):
    pages = {p.stem.split("__")[0]: p.read_text(encoding="utf-8") for p in hostile_run.glob("*.html")}
    assert set(HEADINGS) <= set(pages)
    for name, page in pages.items():
        assert SCRIPT not in page and IMG not in page, name
        assert "<b>Sons</b>" not in page and "<i>EMEA</i>" not in page, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["05_pipeline_review"]


def test_the_load_notes_and_the_warnings_open_each_report_escaped(hostile_run):
    """The note of the load opens every report; the leakage warning raised in 03's cells opens 03, naming the
    column; both escaped, right after the report's header, each once."""
    import re

    for path in hostile_run.glob("0*.html"):
        page = path.read_text(encoding="utf-8")
        box = re.search(r'<section id="read-this-first".*?</section>', page, re.DOTALL)
        assert box is not None, path.name
        assert page.index('class="salesforecast-header"') < box.start(), path.name
        assert f"From the data load:</b> Owner {ESCAPED_SCRIPT} is known by a user id only." in box.group(0)
        assert box.group(0).count("is known by a user id only") == 1
    lead_page = next(hostile_run.glob("03_lead_scoring*.html")).read_text(encoding="utf-8")
    box = re.search(r'<section id="read-this-first".*?</section>', lead_page, re.DOTALL).group(0)
    assert re.search(f"<b>Leakage:</b> column (&#x27;|'){re.escape(ESCAPED_SCRIPT)}(&#x27;|')", box), box


def _browser():
    if CHROMIUM is None:
        pytest.skip("no chromium: `apt-get install chromium` (.ci/run does it) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="`pip install playwright` (a dev dependency)")
    return sync_api


def _open_all(folder: Path, shots: str):
    sync_api = _browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seen = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            for html in sorted(folder.glob("*.html")):
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                errors, dialogs, requests = [], [], []
                page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
                page.on("dialog", lambda d, seen_=dialogs: (seen_.append(d.message), d.dismiss()))
                page.on("request", lambda r, q=requests: q.append(r.url))
                page.goto(html.as_uri())
                page.wait_for_load_state("load")
                page.screenshot(path=str(ARTIFACTS / f"{shots}__{html.stem}.png"), full_page=True)
                seen[html.stem.split("__")[0]] = {
                    "errors": errors,
                    "dialogs": dialogs,
                    "external": [u for u in requests if not u.startswith(("file:", "data:"))],
                    "h1": page.locator("h1").all_inner_texts(),
                    "images": page.locator("img").count(),
                    "text": page.locator("body").inner_text(),
                    "box": " ".join(page.locator("#read-this-first").all_inner_texts()),
                }
                page.close()
        finally:
            browser.close()
    return seen


def test_reports_load_in_a_real_browser(sample_suite):
    seen = _open_all(sample_suite, "sample")  # reads the pages; the screenshots go to ARTIFACTS
    for stem in HEADINGS:
        page = seen[stem]
        assert page["errors"] == [], (stem, page["errors"])
        assert page["external"] == [], (stem, page["external"])  # self-contained: nothing fetched
        assert page["h1"], stem
        assert page["images"] >= 1, stem
    assert seen["index"]["errors"] == []


def test_injected_names_fire_nothing_and_show_as_text(hostile_run):
    seen = _open_all(hostile_run, "hostile")
    for stem, page in seen.items():
        assert page["dialogs"] == [], (stem, page["dialogs"])
        assert page["errors"] == [], (stem, page["errors"])
    assert SCRIPT in seen["05_pipeline_review"]["text"]
    assert any(IMG in page["text"] for page in seen.values())
    box = seen["03_lead_scoring"]["box"]  # the read-this-first box, as the reader sees it
    assert box.startswith("Read this first") and f"From the data load: {HOSTILE_NOTE}" in box
    assert f"Leakage: column '{SCRIPT}'" in box


def test_reports_the_data_cannot_support_render_what_they_need(tmp_path):
    """No stage history: stage conversion and the pipeline review render a "what this report needs" page (status
    needs, exit status 3) naming the history and how to provide it; never a traceback."""
    data, _ = generate(n_opportunities=300, seed=11, years=2)
    data.stage_history = data.stage_history.iloc[:0]
    folder = data.to_folder(tmp_path / "nohistory")
    only = ["02_stage_conversion", "05_pipeline_review"]
    result = run_reports(DEFAULT_CONFIG, tmp_path / "out", only=only, params={"source": str(folder)}, jobs=2)
    assert result.exit_code == 3, [(r.status, r.error) for r in result.results]
    assert [r.status for r in result.results] == ["needs", "needs"]
    for r in result.results:
        page = r.html.read_text(encoding="utf-8")
        assert r.html.name == f"{r.spec.name}.html" and '<section id="report-needs">' in page
        assert "This report needs stage history, which the data lacks" in page
        assert "derive_from_dates" in page and "from_snapshots" in page
        assert "Traceback" not in page and "ReportNeeds" not in page
