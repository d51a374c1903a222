"""Rendered pages as a reader sees them: a scan of their text for what no reader should meet, and screenshots.

`reader_problems` reads the visible text of a page (Chromium's ``document.body.innerText`` with every
``<details>`` opened, or `page_text` of its HTML without a browser) and lists what a sales leader should never have
to read:

- a missing value written by pandas or Python: ``NaN``, ``nan``, ``NaT``, ``None`` (not the English word: "None
  of the deals ..." is a sentence), ``<NA>``, ``inf``;
- a name of the code: a method, metric, column, value or parameter of the registry (`labels.code_names`), such as
  ``stage_conversion`` or ``holdout_months``, where the page should say its label, or a public function or class
  of the package (`package_names`: ``pipeline_coverage``);
- ``True`` or ``False`` as a value (not "False positives"): a reader reads yes or no;
- a Python or pandas representation: ``<... object at 0x...>``, ``<Figure size ...>``, ``Timestamp(``,
  ``np.float64(``, ``array(``, ``dtype:``, ``Name: ..., dtype``, ``Index([``, ``('a', 'b')``, a traceback;
- a number in scientific notation (``1.2e+06``);
- a fractional count of days (``23.5 days``): days are whole.

What is legitimately spelled like code is not a problem: the names of the data contract (``close_date``,
``opportunity_id``, ``stage_history``: the columns and tables of the user's files, which the data-quality report
and the README name as the files spell them), a word that is part of a path or a file name (``data/raw/acme_crm``,
``stage_history.csv``: the source the user passed, shown in the header), and a setting as it is typed on the command
line or in reports.yml, ``name=value`` with no space (``-p maturity_days=90``: what a "needs" page tells the
person who runs the reports to type).

`take_screenshots` opens every page of a rendered run (``reports/latest``) in headless Chromium at 1400x900 and
writes its first screen and the whole page as PNG images, with an ``index.html`` that lists them and what the scan
found on each page (``salesforecast screenshots``, ``make screenshots``). It renders nothing itself.
"""

from __future__ import annotations

import ast
import functools
import html
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

from salesforecast.labels import code_names
from salesforecast.schema import TABLES

__all__ = [
    "CHROMIUM",
    "VIEWPORT",
    "ReaderProblem",
    "Screenshot",
    "ScreenshotError",
    "allowed_names",
    "code_names_on_pages",
    "fractional_day_cells",
    "page_problems",
    "package_names",
    "page_text",
    "reader_problems",
    "run_pages",
    "screenshots_index",
    "take_screenshots",
]

#: Where Debian's Chromium is (``apt-get install chromium``); playwright drives it, its own browsers are not used.
CHROMIUM = "/usr/bin/chromium"
#: The screen a reader is assumed to have: width, height (the first screen of a page).
VIEWPORT = (1400, 900)
#: Reader problems listed per page in the screenshots' index (the rest counted).
_LISTED = 12


class ReaderProblem(NamedTuple):
    """Something a reader should not see on a page: what it is, and the text around it (one line, cut)."""

    what: str
    text: str


@functools.cache
def package_names() -> frozenset[str]:
    """The snake_case names of the package's public functions and classes (read from its source, nothing imported).

    A page names what the code computes in words, never by the function that computes it. The generators of
    `salesforecast.datasets` are left out: their names are the names of the data's folders (the gallery's
    ``current_state_only``), which a report shows as its source.

    Examples
    --------
    >>> {"take_screenshots", "format_table", "code_names"} <= package_names()
    True
    """
    names = set()
    package = Path(__file__).resolve().parent
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] == "datasets":  # generators: their names are the data's folders'
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                names.add(node.name)
    return frozenset(n for n in names if "_" in n)


def code_names_on_pages() -> set[str]:
    """The names `reader_problems` looks for: `labels.code_names` and `package_names`, less `allowed_names`."""
    return (code_names() | package_names()) - allowed_names()


def allowed_names() -> set[str]:
    """The snake_case names a page may show: the tables and columns of the data contract (`schema.TABLES`).

    They are how the user's files spell their columns, and the data-quality report names them so.

    Examples
    --------
    >>> {"close_date", "opportunity_id", "stage_history"} <= allowed_names()
    True
    """
    names = set(TABLES)
    for spec in TABLES.values():
        names.update(c.name for c in spec.columns)
    return {n for n in names if "_" in n}


_SNAKE = re.compile(r"(?<![\w/\\-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w/\\-]|\.\w)")
# None as a value, not the English pronoun: "None of the deals", "None was", "None is" are sentences
_NONE = re.compile(r"\bNone\b(?!\s+(?:of|was|were|is|are|has|have|had|in|at|on|for|so far|yet)\b)")
_Q = r"'[^'\n]{1,80}'"  # a quoted string in a repr
_CHECKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("missing value NaN", re.compile(r"\b(?:NaN|nan)\b")),
    ("missing value NaT", re.compile(r"\bNaT\b")),
    ("missing value <NA>", re.compile(r"<NA>")),
    ("missing value None", _NONE),
    ("boolean True/False", re.compile(r"\b(?:True|False)\b(?!\s+(?:positives?|negatives?|alarms?)\b)")),
    ("infinity", re.compile(r"(?<![\w.])-?inf\b")),
    ("Python object", re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")),
    ("matplotlib figure repr", re.compile(r"<(?:Figure|Axes|matplotlib\.[\w.]+) ?(?:size|[:(])")),
    ("pandas repr", re.compile(r"\b(?:Timestamp|Timedelta|Period|Interval|DatetimeIndex|Index|Series|DataFrame)\(")),
    ("numpy repr", re.compile(r"\b(?:np|numpy)\.\w+\(|\barray\(|\bdtype(?::|=|\('|\s+object\b)")),
    ("pandas repr", re.compile(r"\bName: [^\n,]*, (?:dtype|Length)\b")),
    (
        "Python list, tuple or dict",
        re.compile(rf"\({_Q}(?:, {_Q})*,\)|\({_Q}(?:, {_Q})+\)|\[{_Q}(?:, {_Q})*\]|\{{{_Q}: "),
    ),
    ("traceback", re.compile(r"Traceback \(most recent call last\)|\b\w+Error: |\b\w+Warning: ")),
    ("scientific notation", re.compile(r"(?<![\w.])\d+(?:\.\d+)?e[+-]\d+\b")),
    ("fractional days", re.compile(r"(?<![\w.,])\d[\d,]*\.\d+\s*(?:days?|d)\b")),
)


def _excerpt(text: str, start: int, end: int, width: int = 50) -> str:
    """The line of `text` around ``[start, end)``, at most `width` characters on each side."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    left = max(line_start, start - width)
    right = min(line_end, end + width)
    cut = " ".join(text[left:right].split())
    return ("..." if left > line_start else "") + cut + ("..." if right < line_end else "")


def reader_problems(text: str, names: set[str] | None = None) -> list[ReaderProblem]:
    """What a reader should not meet in the visible text of a page (see the module docstring).

    Parameters
    ----------
    text : str
        The page's visible text: Chromium's ``document.body.innerText`` with its ``<details>`` open, or
        `page_text` of the HTML.
    names : set of str, optional
        The names of the code to look for; default `code_names_on_pages`.

    Returns
    -------
    list of ReaderProblem
        In the order of the text; empty when the page reads clean.

    Examples
    --------
    >>> [p.what for p in reader_problems("P50 of stage_conversion: NaN. None of the deals; close_date set.")]
    ['name of the code stage_conversion', 'missing value NaN']
    >>> [p.what for p in reader_problems("median 23.5 days, data/raw/acme_crm, <Figure size 640x480 with 1 Axes>")]
    ['fractional days', 'matplotlib figure repr']
    >>> reader_problems("('created_at_month', 'created_at_day_of_week') were left out")[0].text[:12]
    "('created_at"
    """
    if names is None:
        names = code_names_on_pages()
    found: list[tuple[int, ReaderProblem]] = []
    for match in _SNAKE.finditer(text):
        if match.group(0) in names and not text.startswith("=", match.end()):  # not a setting as typed: name=value
            what = f"name of the code {match.group(0)}"
            found.append((match.start(), ReaderProblem(what, _excerpt(text, match.start(), match.end()))))
    for what, pattern in _CHECKS:
        for match in pattern.finditer(text):
            found.append((match.start(), ReaderProblem(what, _excerpt(text, match.start(), match.end()))))
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]


_SKIPPED = {"script", "style", "head", "title", "template", "noscript", "svg"}
_BLOCKS = {
    "p", "div", "section", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "ul",
    "ol", "pre", "summary", "details", "caption", "nav", "header", "footer", "main", "dt", "dd", "blockquote",
}  # fmt: skip
_CELLS = {"td", "th"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")
        elif tag in _CELLS:
            self.parts.append("\t")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def page_text(page: str) -> str:
    r"""The text a reader of the HTML `page` can see, every ``<details>`` opened, one block a line.

    Scripts, styles and the head are left out; cells of a row are separated by tabs. Without a browser, so CSS
    is not applied: `reader_problems` on Chromium's ``innerText`` is the reference, this is its stand-in.

    Examples
    --------
    >>> page_text("<style>p{}</style><p>Won <b>1.2M</b></p><details><summary>More</summary>a &lt;b&gt;</details>")
    'Won 1.2M\nMore\na <b>'
    """
    parser = _Text()
    parser.feed(page)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


class _Tables(HTMLParser):
    """The tables of a page: for each, its rows of cell texts (header rows included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._open: list[list[list[str]]] = []  # nested tables
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag == "table":
            self._open.append([])
        elif tag == "tr" and self._open:
            self._open[-1].append([])
        elif tag in _CELLS and self._open and self._open[-1]:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag in _CELLS and self._cell is not None and self._open and self._open[-1]:
            self._open[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._open:
            self.tables.append(self._open.pop())

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


_DAYS_HEADER = re.compile(r"(?<![a-z])days?(?![a-z])", re.IGNORECASE)
_FRACTION = re.compile(r"[+-]?\d[\d,]*\.\d+")


def fractional_day_cells(page: str) -> list[ReaderProblem]:
    """Cells of a column headed in days (``median days``, ``days in stage``) written with decimals (``23.5``, ``4.0``).

    A table's first row is its header; each later row as long as the header is read under it (a row of another
    length, under a header of two levels, is left out). Days are whole on a page: ``format_value(x, "days")``.

    Examples
    --------
    >>> page = "<table><tr><th>stage</th><th>median days</th></tr><tr><td>A</td><td>23.5</td></tr></table>"
    >>> fractional_day_cells(page)
    [ReaderProblem(what='fractional days', text='median days: 23.5')]
    """
    parser = _Tables()
    parser.feed(page)
    parser.close()
    found = []
    for rows in parser.tables:
        rows = [r for r in rows if r]
        if len(rows) < 2:
            continue
        header = rows[0]
        columns = [i for i, h in enumerate(header) if _DAYS_HEADER.search(h)]
        for row in rows[1:]:
            if len(row) != len(header):
                continue
            found += [
                ReaderProblem("fractional days", f"{header[i]}: {row[i]}")
                for i in columns
                if _FRACTION.fullmatch(row[i])
            ]
    return found


def page_problems(page: str) -> list[ReaderProblem]:
    """`reader_problems` of the HTML `page`'s visible text (`page_text`), and `fractional_day_cells` of its tables."""
    return reader_problems(page_text(page)) + fractional_day_cells(page)


# ------------------------------------------------------------------------------------------------ screenshots
class ScreenshotError(RuntimeError):
    """Screenshots cannot be taken: no rendered run, no Chromium or no playwright (one line, for the CLI)."""


@dataclass(frozen=True)
class Screenshot:
    """One page of a run as Chromium showed it at `VIEWPORT`.

    Attributes
    ----------
    page : str
        The page's file name in the run folder (``index.html``, ``04_forecast_accuracy.html``).
    title : str
        The page's title.
    first_screen, full_page : Path
        The PNG of its first screen and of the whole page.
    height : int
        The page's height in CSS pixels.
    headline_top : float or None
        Where its ``<section id="headline">`` starts, in pixels from the top; None without one.
    problems : list of ReaderProblem
        `reader_problems` of its visible text, every ``<details>`` opened.
    """

    page: str
    title: str
    first_screen: Path
    full_page: Path
    height: int
    headline_top: float | None
    problems: list[ReaderProblem] = field(default_factory=list)

    @property
    def screens(self) -> float:
        """The page's height in screens of `VIEWPORT`."""
        return self.height / VIEWPORT[1]

    def headline_note(self) -> str:
        """Where the headline is: ``headline on the first screen (at 212 px)``, ``no headline``; the index: ``""``."""
        if self.page == "index.html":
            return ""
        if self.headline_top is None:
            return "no headline"
        where = "on the first screen" if self.headline_top < VIEWPORT[1] else "below the first screen"
        return f"headline {where} (at {self.headline_top:,.0f} px)"

    def summary(self) -> str:
        """One line: the page, its height in screens, where its headline is and how many reader problems it has.

        Examples
        --------
        >>> Screenshot("a.html", "A", Path("a.png"), Path("a.full.png"), 4500, 120.0).summary()
        'a.html: 5.0 screens, headline on the first screen (at 120 px), no reader problem'
        """
        parts = [f"{self.page}: {self.screens:.1f} screens", self.headline_note()]
        parts.append(f"{len(self.problems)} reader problem(s)" if self.problems else "no reader problem")
        return ", ".join(p for p in parts if p)


#: Opens every ``<details>`` (a reader opens them) and returns what the page shows as text.
_VISIBLE_TEXT = (
    "() => { document.querySelectorAll('details').forEach(d => { d.open = true; }); return document.body.innerText; }"
)
_HEADLINE_TOP = (
    "() => { const h = document.querySelector('section#headline'); return h ? h.getBoundingClientRect().top : null; }"
)


def _browser_ready(chromium: str | Path) -> Any:
    """The sync API of playwright, once Chromium and playwright are both there; else a `ScreenshotError`."""
    if not Path(chromium).is_file() and shutil.which(str(chromium)) is None:
        raise ScreenshotError(f"Chromium not found at {chromium}: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        raise ScreenshotError(
            "playwright is not installed: pip install playwright (a dev dependency; its own browsers are not needed)"
        ) from None
    return sync_api


def run_pages(run: str | Path) -> list[Path]:
    """The pages of a rendered run folder: its ``index.html`` first, then its reports by name.

    Raises
    ------
    ScreenshotError
        When `run` holds no ``index.html`` (nothing rendered there).
    """
    folder = Path(run)
    index = folder / "index.html"
    if not index.is_file():
        missing = "no index.html" if folder.is_dir() else "no such folder"
        raise ScreenshotError(
            f"no rendered run at {folder} ({missing}): render the reports first (make reports, or salesforecast report)"
        )
    return [index, *sorted(p for p in folder.glob("*.html") if p.name != "index.html")]


def take_screenshots(
    run: str | Path,
    out: str | Path,
    chromium: str | Path = CHROMIUM,
    viewport: tuple[int, int] = VIEWPORT,
) -> list[Screenshot]:
    """Screenshot every page of a rendered run: its first screen and the whole page, and an index of them.

    Nothing is rendered: the pages are opened as they are, offline, in headless Chromium (Debian's, through
    playwright). Each page ``NAME.html`` gives ``NAME.png`` (the first `viewport`, ``<details>`` closed as a reader
    first sees them) and ``NAME.full.png`` (the whole page) in `out`, and ``out/index.html`` lists them with each
    page's height, where its headline starts and what `reader_problems` finds in its text with every
    ``<details>`` opened (and `fractional_day_cells` in its tables).

    Parameters
    ----------
    run : path
        A rendered run folder (``reports/latest`` or ``reports/<run>``).
    out : path
        Where the images and their index go (created; images of the same names are replaced).
    chromium : path
        The Chromium executable.
    viewport : (int, int)
        Width and height of the screen, in CSS pixels.

    Returns
    -------
    list of Screenshot
        One per page, the run's index first.

    Raises
    ------
    ScreenshotError
        No rendered run at `run`, `out` is the run folder itself, Chromium or playwright is missing.
    """
    pages = run_pages(run)
    out = Path(out)
    if out.resolve() == Path(run).resolve():
        raise ScreenshotError(f"--out {out} is the run folder itself: its index.html would be replaced")
    sync_api = _browser_ready(chromium)
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    width, height = viewport
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            view = browser.new_page(viewport={"width": width, "height": height})
            for path in pages:
                view.goto(path.resolve().as_uri(), wait_until="load")
                first, full = out / f"{path.stem}.png", out / f"{path.stem}.full.png"
                view.screenshot(path=str(first))
                view.screenshot(path=str(full), full_page=True)
                top = view.evaluate(_HEADLINE_TOP)
                shots.append(
                    Screenshot(
                        page=path.name,
                        title=view.title(),
                        first_screen=first,
                        full_page=full,
                        height=int(view.evaluate("() => document.documentElement.scrollHeight")),
                        headline_top=None if top is None else float(top),
                        problems=reader_problems(view.evaluate(_VISIBLE_TEXT)) + fractional_day_cells(view.content()),
                    )
                )
        finally:
            browser.close()
    (out / "index.html").write_text(screenshots_index(shots, Path(run), out, viewport), encoding="utf-8")
    return shots


def screenshots_index(shots: Sequence[Screenshot], run: Path, out: Path, viewport: tuple[int, int] = VIEWPORT) -> str:
    """The ``index.html`` of a screenshots folder: each page's first screen, a link to the whole page and its notes.

    Every text from the pages (titles, excerpts of what the scan found) is escaped.
    """
    width, height = viewport
    rows = []
    for s in shots:
        page_href = html.escape(Path(os.path.relpath(run.resolve() / s.page, out.resolve())).as_posix(), quote=True)
        notes = [f"{s.height:,} px high ({s.screens:.1f} screens)"]
        if headline := s.headline_note():
            notes.append(headline)
        notes.append(f"{len(s.problems)} reader problem(s)" if s.problems else "no reader problem")
        found = "".join(f"<li><b>{html.escape(p.what)}</b>: {html.escape(p.text)}</li>" for p in s.problems[:_LISTED])
        more = f"<li>and {len(s.problems) - _LISTED} more</li>" if len(s.problems) > _LISTED else ""
        first, full = html.escape(s.first_screen.name, quote=True), html.escape(s.full_page.name, quote=True)
        rows.append(
            f'<section class="shot"><h2><a href="{page_href}">{html.escape(s.title or s.page)}</a></h2>'
            f'<p class="notes">{html.escape(s.page)} &middot; {" &middot; ".join(html.escape(n) for n in notes)}</p>'
            f"{f'<ul class=problems>{found}{more}</ul>' if found else ''}"
            f'<p><a href="{first}"><img src="{first}" width="{width // 3}" height="{height // 3}" alt="first screen of '
            f'{html.escape(s.page, quote=True)}"></a> <a href="{full}">whole page</a></p></section>'
        )
    total = sum(len(s.problems) for s in shots)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Screenshots of the reports</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1200px;
  padding: 0 16px; color: #222; }}
.shots {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 8px 24px; }}
.shot {{ border-top: 1px solid #d5dae1; padding: 8px 0; }} h2 {{ font-size: 17px; margin: 6px 0; }}
.notes {{ color: #555; margin: 2px 0 6px; }} img {{ border: 1px solid #c8ced6; vertical-align: top; }}
ul.problems {{ color: #b42318; font-size: 13px; margin: 4px 0; }}
</style>
</head>
<body>
<h1>Screenshots of the reports</h1>
<p>{len(shots)} page(s) of {html.escape(str(run))} at {width}x{height}: each page's first screen (click it for the
image) and the whole page. {total} reader problem(s) in all (NaN, None, names of the code, Python output, fractional
days, found in the text with every folded part opened).</p>
<div class="shots">
{chr(10).join(rows)}
</div>
</body>
</html>
"""
