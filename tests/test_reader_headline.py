"""Issue 14, item 1: every report opens with its answer (`reports.headline`), the read-this-first box right after it."""

from __future__ import annotations

from salesforecast import reports
from salesforecast.reports import Figure, headline, page_headline
from tests.test_reports import _limit, _nb


def _html(display) -> dict:
    return {"output_type": "display_data", "data": {"text/html": display.data}}


HEADER = {"output_type": "display_data", "data": {"text/html": '<div class="salesforecast-header">H</div>'}}


def test_headline_escapes_everything_but_bold_and_the_index_reads_its_sentence():
    h = headline(
        "We will **miss** the quarter <script>x</script>",
        [Figure("Quota <b>", "€1.0M", "P10-P90 <i>", tone="bad"), Figure("Won", "€0.4M")],
        note="based on **12** quarters",
    )
    assert "<b>miss</b>" in h.data and "<script>" not in h.data and "&lt;script&gt;" in h.data
    assert "Quota &lt;b&gt;" in h.data and "P10-P90 &lt;i&gt;" in h.data and "#b42318" in h.data
    assert h.data.count('class="headline-figure"') == 2 and "<b>12</b> quarters" in h.data
    assert page_headline(h.data) == "We will miss the quarter <script>x</script>"  # text, unescaped by the parser
    assert 'class="headline-figure"' not in headline("Only a sentence").data


def test_the_headline_moves_to_the_top_and_the_box_follows_it():
    """A notebook shows its headline once its numbers are computed; the page opens with it, then the box."""
    nb = _nb(
        [HEADER],
        [{"output_type": "stream", "name": "stdout", "text": "first table\n"}],
        [_limit("warning", "small <sample>", "Small sample", "SmallSampleWarning")],
        [_html(headline("The answer", [Figure("A", "1")])), {"output_type": "stream", "name": "stdout", "text": "x\n"}],
    )
    page = reports.render_html(nb, "T")
    marks = ('class="salesforecast-header"', 'id="headline"', 'id="read-this-first"', "first table")
    order = [page.index(s) for s in marks]
    assert order == sorted(order)
    assert page.count('id="headline"') == 1
    # no box: the headline still follows the header; no header: it follows the title
    nb = _nb([{"output_type": "stream", "name": "stdout", "text": "first table\n"}], [_html(headline("Late answer"))])
    page = reports.render_html(nb, "T")
    assert page.index('id="headline"') < page.index("first table")


def test_without_a_headline_the_box_stays_under_the_header():
    nb = _nb([HEADER], [_limit("warning", "w", "W", "UserWarning")])
    page = reports.render_html(nb, "T")
    assert page.index('class="salesforecast-header"') < page.index('id="read-this-first"')


def test_the_header_shows_parameters_under_their_labels():
    h = reports.report_header("T", {"holdout_months": 6, "as_of": "latest"})
    assert "holdout (months)" in h.data and "report date" in h.data and "holdout_months" not in h.data
