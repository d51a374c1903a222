"""Reading the suite as a reader moves through it: the index says what each report answers, for whom, and its
headline; every page opens with a bar to the index, to the run's other pages and to its own sections; each parameter
set has its own title; the parameters wait, folded, under the header. Names from the data or the configuration
(a team called ``<script>``) stay text in the index, the bar and the titles.

One real run (two reports of the sample and a "what this report needs" page) serves the module; the browser test
needs Debian's ``chromium`` and the ``playwright`` package, and skips without them.
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from salesforecast import reports
from salesforecast.reports import load_config, run_reports

REPO = Path(__file__).resolve().parent.parent
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CONFIG = f"""\
notebooks: {REPO / "notebooks"}
reports:
  - notebook: 01_data_quality
    description: "Can the <b>numbers</b> be trusted?"
    audience: "RevOps {IMG}"
  - notebook: 01_data_quality
    parameters: {{as_of: "2025-11-17"}}
  - notebook: 05_pipeline_review
    title: "Pipeline review, {{team}}"
    parameters: {{team: "{SCRIPT}"}}
"""
TITLES = {
    "01_data_quality": "Data quality",
    "01_data_quality__2025-11-17": "Data quality, as of 17 Nov 2025",
    "05_pipeline_review__script-alert-1-script": f"Pipeline review, {SCRIPT}",
}


class _Links(HTMLParser):
    """Every element's tag and attributes, in order, with the text of each ``<a>`` and ``<h1>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Links()
    parser.feed(page)
    return parser.tags


def _nav(page: str) -> str:
    match = re.search(r'<nav id="report-nav".*?</nav>', page, re.DOTALL)
    assert match, "no navigation bar"
    return match.group(0)


@pytest.fixture(scope="module")
def nav_run(tmp_path_factory):
    """Two reports of the sample (one notebook, two parameter sets) and a needs page titled after a hostile team."""
    folder = tmp_path_factory.mktemp("nav")
    config = folder / "reports.yml"
    config.write_text(CONFIG, encoding="utf-8")
    result = run_reports(config, folder / "out", jobs=2)
    assert [r.status for r in result.results] == ["ok", "ok", "needs"], [r.error for r in result.results]
    return result


def test_parameter_sets_get_distinct_titles_in_the_page_title_and_heading(nav_run):
    assert {r.spec.name: r.spec.title for r in nav_run.results} == TITLES
    for r in nav_run.results:
        page = r.html.read_text(encoding="utf-8")
        title = re.escape(reports.html.escape(r.spec.title))
        assert re.search(rf"<title>{title}(: what this report needs)?</title>", page), r.spec.name
        assert re.search(rf"<h1[^>]*>{title}(<a class=\"anchor-link\"[^>]*>¶</a>)?</h1>", page), r.spec.name
        assert SCRIPT not in page


def test_the_repository_config_titles_the_mid_quarter_view_by_its_date():
    titles = [s.title for s in load_config(reports.DEFAULT_CONFIG).specs]
    assert titles.count("Forecast accuracy") == 1 and "Forecast accuracy, as of 17 Nov 2025" in titles
    assert len(set(titles)) == len(titles)


def test_distinct_titles_add_only_the_parameters_that_tell_reports_apart():
    defaults = {"source": "sample", "team": "", "as_of": None, "seed": 0}
    sets = [({"team": "EMEA"}, defaults), ({"team": "APAC"}, defaults), ({"team": "APAC", "seed": 3}, defaults)]
    assert reports._distinct_titles(["P"] * 3, sets) == ["P, EMEA", "P, APAC", "P, APAC, seed 3"]
    # a source given to every report (-p source=...) names none of them
    shared = [({"source": "/d/acme", "as_of": "2024-06-30"}, defaults), ({"source": "/d/acme"}, defaults)]
    assert reports._distinct_titles(["F", "F"], shared) == ["F, as of 30 Jun 2024", "F"]
    assert reports._distinct_titles(["A", "B"], sets[:2]) == ["A", "B"]  # already distinct: left alone


def test_a_title_placeholder_must_name_a_parameter(tmp_path, notebook_factory):
    notebook_factory("good", ["print(name)"])
    config = tmp_path / "reports.yml"
    config.write_text("reports:\n  - notebook: good\n    title: 'Hello {nmae}'\n", encoding="utf-8")
    with pytest.raises(reports.ConfigError, match=r"reports\[0\] \(good\): title: \{nmae\} names no parameter"):
        load_config(config)
    config.write_text("reports:\n  - notebook: good\n    title: 'Hello {name}, {n}'\n", encoding="utf-8")
    assert load_config(config).specs[0].title == "Hello world, 3"


def test_the_index_says_what_each_report_answers_for_whom(nav_run):
    for folder in (nav_run.run_dir, nav_run.latest_dir):
        index = (folder / "index.html").read_text(encoding="utf-8")
        rows = re.findall(r"<tr><td class=\"report\">.*?</tr>", index, re.DOTALL)
        assert len(rows) == 3
        first, second, needs = rows
        assert '<p class="what">Can the &lt;b&gt;numbers&lt;/b&gt; be trusted?</p>' in first
        assert '<p class="for">For: RevOps &lt;img src=x onerror=alert(1)&gt;</p>' in first
        # no description given: the notebook's first paragraph, as plain text
        assert '<p class="what">What the CRM data holds and what could not be used. Every row read' in second
        assert "**" not in second and '<p class="for">' not in second
        needs_page = "05_pipeline_review__script-alert-1-script.html"
        assert f'<a class="report" href="{needs_page}">Pipeline review, {ESCAPED_SCRIPT}</a>' in needs
        assert '<td class="needs">needs</td>' in needs  # the run log is still there, after what the report answers
        assert first.index('class="what"') < first.index('class="ok"')
        assert SCRIPT not in index and IMG not in index and "<b>numbers" not in index


def test_every_page_links_to_the_index_its_siblings_and_its_sections(nav_run):
    pages = [r.html.name for r in nav_run.results]
    for folder in (nav_run.run_dir, nav_run.latest_dir):
        for name in pages:
            page = (folder / name).read_text(encoding="utf-8")
            nav = _nav(page)
            # shown at the top, the bar closes the document: the report's text comes first in the source
            assert page.index("<h1") < page.index(nav) and page.count('id="report-nav"') == 1, name
            assert reports.NAV_SLOT not in page
            hrefs = [a.get("href") for tag, a in _tags(nav) if tag == "a"]
            files = [h for h in hrefs if not h.startswith("#")]
            assert files[0] == "index.html"
            assert sorted(files[1:]) == sorted(p for p in pages if p != name), name  # every sibling, not itself
            for href in files:
                assert (folder / unquote(urlsplit(href).path)).is_file(), (name, href)
            assert SCRIPT not in nav and (name.startswith("05") or ESCAPED_SCRIPT in nav)
            ids = {a["id"] for _, a in _tags(page) if a.get("id")}
            anchors = [unquote(h[1:]) for h in hrefs if h.startswith("#")]
            assert all(a in ids for a in anchors), (name, [a for a in anchors if a not in ids])
            if name.startswith("01_"):  # the table of contents: the notebook's ## headings, in order
                sections = [t for _, t in reports.page_sections(page)]
                assert sections[:3] == [
                    "Notes from the import",
                    "Rows read, accepted and quarantined",
                    "Quarantine by reason",
                ]
                assert len(anchors) == len(sections) >= 6
            else:
                assert anchors == []  # a needs page has no sections


def test_the_parameters_are_folded_in_a_closed_details_under_the_header(nav_run):
    for r in nav_run.results:
        page = r.html.read_text(encoding="utf-8")
        details = re.search(r"<details class=\"salesforecast-parameters\"[^>]*>(.*?)</details>", page, re.DOTALL)
        assert details, r.spec.name
        assert " open" not in details.group(0).split(">", 1)[0]
        assert "<summary" in details.group(1) and "<table" in details.group(1)
        if r.status == "ok":
            header = re.search(r'<div class="salesforecast-header".*?</details></div>', page, re.DOTALL).group(0)
            line = header.split("<details", 1)[0]  # the line that stays visible: as of and source
            assert "data as of <b>2025-" in line and "source <b>sample</b>" in line
            assert "<th" not in line


def test_report_header_folds_its_parameters_and_escapes_them():
    header = reports.report_header("T <b>", {"source": "/data/" + SCRIPT, "team": IMG}, as_of="2024-06-30").data
    assert header.count("<details") == 1 and "Parameters (2)" in header
    assert SCRIPT not in header and IMG not in header and "&lt;img src=x onerror=alert(1)&gt;" in header
    assert "T &lt;b&gt;" in header and "data as of <b>2024-06-30</b>" in header
    assert reports.report_header("T", {}).data.count("<details") == 0  # nothing to fold


def test_the_box_still_follows_the_header_with_its_parameters_folded():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    from salesforecast.session import LIMIT_MIMETYPE

    header = reports.report_header("T", {"source": "sample", "seed": 0}, as_of="2024-06-30").data
    limit = {"kind": "warning", "label": "Small sample", "category": "X", "message": "only <3> deals"}
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title\n\nIntro.\n\n## First part"),
            new_code_cell("x", outputs=[new_output("display_data", data={LIMIT_MIMETYPE: limit, "text/plain": ""})]),
            new_code_cell("h", outputs=[new_output("display_data", data={"text/html": header})]),
            new_markdown_cell("## Second part"),
        ]
    )
    page = reports.render_html(nb, "My <title>", nav=reports._nav_html("p.html", [("p.html", "My <title>", "ok")]))
    start = page.index('class="salesforecast-header"')
    assert start < page.index("</details>") < page.index('id="read-this-first"') < page.index("Second part")
    assert "<title>My &lt;title&gt;</title>" in page and re.search(r"<h1[^>]*>My &lt;title&gt;", page)
    assert [t for _, t in reports.page_sections(page)] == ["First part", "Second part"]


def test_the_index_shows_a_report_headline(tmp_path, notebook_factory):
    """The first paragraph of a page's <section id="headline"> is its line in the index, as text."""
    cell = (
        "from IPython.display import HTML\n"
        "import html\n"
        "HTML('<section id=\"headline\"><p>We make the quarter: <b>1.2M</b> of 1.0M, led by '"
        " + html.escape(name) + '.</p><p>Second.</p></section>')"
    )
    notebook_factory("head", [cell])
    notebook_factory("plain", ['print("no headline")'])
    config = tmp_path / "reports.yml"
    config.write_text(f"reports:\n  - notebook: head\n    parameters: {{name: '{SCRIPT}'}}\n  - plain\n")
    result = run_reports(config, tmp_path / "out", jobs=1)
    assert result.results[0].headline == f"We make the quarter: 1.2M of 1.0M, led by {SCRIPT}."
    assert result.results[1].headline is None
    index = (result.latest_dir / "index.html").read_text(encoding="utf-8")
    assert f'<p class="headline">We make the quarter: 1.2M of 1.0M, led by {ESCAPED_SCRIPT}.</p>' in index
    assert index.count('class="headline"') == 1 and SCRIPT not in index


def test_many_siblings_go_in_a_menu_and_the_current_page_is_not_a_link():
    pages = [(f"r{i}.html", f"Report <{i}>", "ok") for i in range(12)]
    nav = reports._nav_html("r3.html", pages, [("a:b,c", "Sec <1>")])
    assert '<details class="nav-all"><summary>Reports of this run (12)</summary>' in nav
    assert '<span aria-current="page">Report &lt;3&gt;</span>' in nav and 'href="r3.html"' not in nav
    assert 'href="#a:b,c"' in nav and "Sec &lt;1&gt;" in nav and "<1>" not in nav
    assert '<ul class="nav-siblings">' in reports._nav_html("r0.html", pages[:3])


def test_first_screen_shows_the_way_back_and_the_title_with_the_parameters_closed(nav_run):
    if CHROMIUM is None:
        pytest.skip("no chromium: `apt-get install chromium` (.ci/run does it) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="`pip install playwright` (a dev dependency)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for r in nav_run.results:
                page.goto(r.html.as_uri())
                back = page.locator('#report-nav a[href="index.html"]')
                for box in (back.bounding_box(), page.locator("h1").first.bounding_box()):
                    assert box and box["y"] >= 0 and box["y"] + box["height"] <= 900, r.spec.name
                assert page.locator("h1").first.inner_text().startswith(r.spec.title), r.spec.name
                bar = page.locator("#report-nav").bounding_box()
                assert bar["y"] + bar["height"] <= page.locator("h1").first.bounding_box()["y"], (
                    r.spec.name
                )  # not under
                details = page.locator("details.salesforecast-parameters")
                assert details.count() == 1 and details.evaluate("d => d.open") is False
                assert not page.locator("details.salesforecast-parameters table").is_visible()
                if r.status == "ok":  # a section link lands its heading below the sticky bar, not under it
                    page.locator("#report-nav details.nav-toc summary").click()
                    link = page.locator("#report-nav details.nav-toc a").nth(3)
                    target = link.get_attribute("href")
                    link.click()
                    page.wait_for_timeout(200)
                    bar = page.locator("#report-nav").bounding_box()
                    heading = page.locator(f"[id='{unquote(target[1:])}']").bounding_box()
                    assert bar["y"] == 0 and bar["y"] + bar["height"] <= heading["y"] < 200, (target, bar, heading)
            page.goto((nav_run.latest_dir / "index.html").as_uri())
            page.locator("a.report").first.click()
            page.wait_for_load_state("load")
            assert page.url.endswith("/01_data_quality.html")
            page.locator('#report-nav a[href="index.html"]').click()
            page.wait_for_load_state("load")
            assert page.url.endswith("/index.html")
            assert dialogs == []
        finally:
            browser.close()


def test_the_bar_fills_its_own_slot_even_when_the_report_prints_the_slot_text():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    printed = new_output("display_data", data={"text/html": f"<p>{reports.NAV_SLOT} in the report</p>"})
    nb = new_notebook(cells=[new_markdown_cell("# T\n\n## Part"), new_code_cell("x", outputs=[printed])])
    page = reports.render_html(nb, "T", nav=reports.NAV_SLOT)
    filled = reports._with_nav(page, reports._nav_html("t.html", [("t.html", "T", "ok")], reports.page_sections(page)))
    assert filled.count('id="report-nav"') == 1
    assert filled.index("in the report") < filled.index('id="report-nav"') < filled.index("</body>")
    assert f"<p>{reports.NAV_SLOT} in the report</p>" in filled  # the report's own text is left as it was
    assert 'id="report-nav"' not in reports.render_html(nb, "T")  # no bar asked for: none
