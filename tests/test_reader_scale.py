"""Pages that hold at scale: a per-rep section shows the team roll-up, the reps that matter and every rep folded, and
a ``for_each: team`` entry gives each manager their own page (issue 14, item 7).

The rendered test runs 04 and 05 once on a generated CRM of 60 reps with a few deals each (the fold starts above
20 reps) and measures the per-rep sections in Chromium at 1400x900; it needs Debian's ``chromium`` and the
``playwright`` package for the heights, and skips that part without them. The 400-rep page heights are measured by
``benchmarks/report_heights.py`` (not in CI).
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from salesforecast import plotting, reports, rollup
from salesforecast.reports import FOLD_ABOVE, FOLD_TOP, ConfigError, fold_rows, load_config, run_reports

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCRIPT = "<script>alert(1)</script>"
N_REPS = 60


class _Tables(HTMLParser):
    """The rows of every ``<table>`` (cell texts), and whether each table lies inside a ``<details>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[bool, list[list[str]]]] = []
        self._details = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self._details += 1
        elif tag == "table":
            self.tables.append((self._details > 0, []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self._details -= 1
        elif tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1][1]:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> list[tuple[bool, list[list[str]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def _reps(n: int) -> pd.DataFrame:
    names = [f"rep {i:03d}" for i in range(n)]
    names[7] = SCRIPT  # an untrusted name, in the open part (largest key) and in the fold
    return pd.DataFrame({"owner": names, "deals": np.arange(n, dtype="int64"), "gap": np.arange(n) * 10.0})


# ------------------------------------------------------------------------------------ fold_rows
def test_fold_rows_shows_the_rollup_the_top_and_folds_every_row():
    reps = _reps(50)
    reps.loc[7, "gap"] = 10_000.0  # the hostile name ranks first
    reps.loc[3, "gap"] = np.nan  # a missing key ranks last
    teams = pd.DataFrame({"team": ["A", "B"], "deals": [600, 625]})
    page = fold_rows(reps, "gap", ranked="the largest gap first", top=10, rollup=teams, rollup_caption="Teams.").data

    tables = _tables(page)
    assert [folded for folded, _ in tables] == [False, False, True]  # roll-up, top, the full table folded
    (_, rolled), (_, top), (_, every) = tables
    assert [r[0] for r in rolled[1:]] == ["A", "B"]
    assert len(top) - 1 == 10  # the header, then at most `top` rows
    assert [r[0] for r in top[1:3]] == [SCRIPT, "rep 049"]  # ranked by the key, largest first
    assert "rep 003" not in [r[0] for r in top[1:]]
    assert [r[0] for r in every[1:]] == reps["owner"].tolist()  # every rep, in the table's order
    assert "… and 40 more reps." in page and "All 50 reps" in page
    assert "10 of 50 reps, the largest gap first:" in page
    assert SCRIPT not in page and "&lt;script&gt;" in page  # escaped in both tables
    assert page.index("Teams.") < page.index("10 of 50") < page.index("<details")


def test_fold_rows_up_to_the_threshold_shows_the_table_as_it_was():
    reps = _reps(FOLD_ABOVE)
    page = fold_rows(reps, "deals", ranked="most deals first", rollup=pd.DataFrame({"team": ["A"]})).data
    assert "<details" not in page and "more reps" not in page
    ((folded, rows),) = _tables(page)  # the roll-up is not shown either: the reps are all there
    assert not folded and [r[0] for r in rows[1:]] == reps["owner"].tolist()
    same = re.sub(r"T_[0-9a-f_]+", "T_", reports.format_table(reps).to_html())  # but for the styler's random id
    assert re.sub(r"T_[0-9a-f_]+", "T_", page) == same


def test_fold_rows_ranks_by_a_callable_key_smallest_first():
    reps = _reps(30)
    page = fold_rows(reps, lambda t: -t["deals"], ranked="the fewest deals first", top=3).data
    (_, top), (_, _every) = _tables(page)
    assert [r[0] for r in top[1:]] == ["rep 000", "rep 001", "rep 002"]
    page = fold_rows(reps, "deals", ranked="the fewest first", ascending=True, top=2, what="owners").data
    assert [r[0] for r in _tables(page)[0][1][1:]] == ["rep 000", "rep 001"] and "and 28 more owners" in page


# ------------------------------------------------------------------------------------ rollup
def test_roll_up_weights_call_ratios_by_bookings_and_adds_the_company():
    bias = pd.DataFrame(
        {
            "owner": ["a", "b", "c", "d"],
            "submissions": [10, 20, 5, 5],
            "bias": [2.0, 0.5, np.inf, 1.0],
            "actual": [100.0, 100.0, 50.0, 0.0],
        }
    )
    teams = rollup.owner_teams(
        pd.DataFrame(
            {
                "owner": ["a", "b", "c", "d", "a"],
                "team": ["X", "X", "Y", "Y", "Y"],
                "created_at": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"]),
            }
        )
    )
    assert teams.to_dict() == {"a": "X", "b": "X", "c": "Y", "d": "Y"}  # a's latest deal is in X
    out = rollup.roll_up(bias, teams, sums=["submissions", "actual"], weighted={"bias": "actual"})
    assert out["team"].tolist() == ["X", "Y", rollup.ALL_TEAMS]
    assert out["reps"].tolist() == [2, 2, 4] and out["submissions"].tolist() == [30, 10, 40]
    assert out["bias"].iloc[0] == pytest.approx(1.25)  # (2 x 100 + 0.5 x 100) / 200
    assert np.isnan(out["bias"].iloc[1])  # c's ratio is infinite, d booked nothing: no weighted ratio
    assert out["bias"].iloc[2] == pytest.approx(1.25)
    assert out.columns.tolist() == ["team", "reps", "submissions", "bias", "actual"]  # the table's order
    with pytest.raises(KeyError, match="'late'"):
        rollup.roll_up(bias, teams, sums=["late"])


def test_a_reps_team_among_deals_created_at_the_same_instant_is_the_greatest_ids_whatever_the_rows_order():
    deals = pd.DataFrame(
        {
            "opportunity_id": ["OPP-2", "OPP-1", "OPP-3"],
            "owner": ["a", "a", "b"],
            "team": ["Y", "X", "X"],
            "created_at": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01"]),
        }
    )
    for rows in (deals, deals.iloc[::-1]):
        assert rollup.owner_teams(rows).to_dict() == {"a": "Y", "b": "X"}  # OPP-2 over OPP-1


def test_a_single_team_is_its_own_company():
    """On a team's own page (for_each: team) the roll-up is the team's row, not the team twice."""
    bias = pd.DataFrame({"owner": ["a", "b"], "actual": [1.0, 2.0]})
    one = rollup.roll_up(bias, pd.Series({"a": "X", "b": "X"}), sums=["actual"])
    assert one["team"].tolist() == ["X"] and one["actual"].tolist() == [3.0]
    deals = pd.DataFrame({"team": ["X", "X"], "won": [1, 0]})
    per_team = rollup.teams_and_company(deals, lambda d, by: d.groupby(by)[["won"]].sum())
    assert per_team.index.tolist() == ["X"]
    no_teams = rollup.teams_and_company(deals.drop(columns="team"), lambda d, by: d.groupby(by)[["won"]].sum())
    assert no_teams.index.tolist() == [rollup.ALL_TEAMS] and no_teams["won"].tolist() == [1]


def test_coverage_gap_and_distance_rank_what_matters():
    far = rollup.distance_from_target(pd.Series([1.0, 2.0, 0.5, 1.2, np.nan]))
    assert far[1] == pytest.approx(far[2]) and far[3] < far[1] and far[0] == 0 and far[4] < 0
    cov = pd.DataFrame({"remaining_quota": [100.0, 10.0], "open_pipeline": [np.nan, 50.0]})
    assert rollup.coverage_gap(cov).tolist() == [100.0, -40.0]


# ------------------------------------------------------------------------------------ charts
def _bias_table(n: int) -> pd.DataFrame:
    ratios = np.linspace(0.5, 1.5, n)
    ratios[0] = np.nan  # no data: never among the reps that matter
    return pd.DataFrame({"owner": [f"r{i}" for i in range(n)], "ratio": ratios})


def test_plot_rep_bias_draws_the_rollup_and_the_top_reps_only():
    table = _bias_table(400)
    teams = pd.DataFrame({"name": ["EMEA", SCRIPT, rollup.ALL_TEAMS], "ratio": [1.1, 0.9, 1.0]})
    ax = plotting.plot_rep_bias(table, top=FOLD_TOP, rollup=teams)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:3] == ["EMEA", SCRIPT, rollup.ALL_TEAMS] and len(labels) == 3 + FOLD_TOP
    shown = set(labels[3:])
    far = rollup.distance_from_target(table["ratio"])
    assert shown == set(table["owner"].iloc[np.argsort(-far, kind="stable")[:FOLD_TOP]])
    assert "r1" in shown and "r0" not in shown  # 50%: the furthest (as far as 200%); no data: never
    assert "of 400 reps" in ax.get_title()
    matplotlib.pyplot.close("all")


def test_plot_rep_bias_up_to_the_threshold_draws_every_rep():
    table = _bias_table(plotting.SHOW_ALL)
    ax = plotting.plot_rep_bias(table, top=5, rollup=pd.DataFrame({"name": ["X"], "ratio": [1.0]}))
    assert len(ax.get_yticklabels()) == plotting.SHOW_ALL and "furthest" not in ax.get_title()
    assert len(plotting.plot_rep_bias(_bias_table(100)).get_yticklabels()) == 100  # no top: every rep, as before
    matplotlib.pyplot.close("all")


def test_plot_adherence_by_draws_the_rollup_and_the_most_deviating():
    rng = np.random.default_rng(0)
    cols = {"share_skipped_stage": "skipped", "share_stalled": "stalled"}
    by_rep = pd.DataFrame(rng.uniform(size=(80, 2)), columns=list(cols), index=[f"r{i}" for i in range(80)])
    by_team = pd.DataFrame({c: [0.2, 0.3] for c in cols}, index=["T", rollup.ALL_TEAMS])
    ax = plotting.plot_adherence_by(by_rep, cols, top=10, rollup=by_team)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == ["T", rollup.ALL_TEAMS] and len(labels) == 12
    assert set(labels[2:]) == set(by_rep.sum(axis=1).nlargest(10).index)
    assert "10 of 80" in ax.get_title()
    assert len(plotting.plot_adherence_by(by_rep.head(15), cols, top=10).get_yticklabels()) == 15
    matplotlib.pyplot.close("all")


# ------------------------------------------------------------------------------------ for_each
@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """A generated CRM of 60 reps with about eight deals each, as a canonical folder."""
    from salesforecast.datasets import generate

    folder = tmp_path_factory.mktemp("scale") / "crm"
    data, _ = generate(n_opportunities=480, n_reps=N_REPS, seed=0)
    data.to_folder(folder)
    return folder


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "reports.yml"
    path.write_text(f"notebooks: {REPO / 'notebooks'}\nreports:\n{body}", encoding="utf-8")
    return path


def test_for_each_team_gives_each_team_its_own_report(tmp_path, crm):
    config = _config(
        tmp_path,
        '  - notebook: 05_pipeline_review\n    title: "Pipeline review, {team}"\n    for_each: team\n'
        "  - notebook: 04_forecast_accuracy\n    for_each: team\n    parameters: {history: 2}\n",
    )
    teams = reports.source_values(crm, "team")
    assert teams == sorted(pd.read_csv(crm / "opportunities.csv")["team"].unique()) and len(teams) > 1
    plan = load_config(config, params={"source": str(crm)})
    assert [s.parameters["team"] for s in plan.specs] == teams * 2
    assert [s.title for s in plan.specs] == [f"Pipeline review, {t}" for t in teams] + [
        f"Forecast accuracy, {t}" for t in teams
    ]
    names = [s.name for s in plan.specs]
    assert len(set(names)) == len(names) and names[0] == f"05_pipeline_review__crm__{teams[0].lower()}"
    # a -p of the column, or a set that gives it, is one report
    assert [s.parameters["team"] for s in load_config(config, params={"source": str(crm), "team": "X"}).specs] == [
        "X",
        "X",
    ]
    # the sample's teams, read from its file (the default source)
    sample = load_config(_config(tmp_path, "  - notebook: 05_pipeline_review\n    for_each: team\n"))
    assert [s.title for s in sample.specs] == [f"Pipeline review, {t}" for t in ["APAC", "EMEA", "NA East", "NA West"]]


def test_for_each_reads_values_as_the_loader_does(tmp_path, crm):
    """The cheap read of a canonical file trims values and matches headers as the loader does."""
    from salesforecast.io import load

    folder = tmp_path / "spaced"
    shutil.copytree(crm, folder)
    opps = pd.read_csv(folder / "opportunities.csv", dtype="str", keep_default_na=False)
    opps["team"] = " " + opps["team"] + "  "
    opps.loc[0, "team"] = ""
    opps.rename(columns={"team": " Team "}).to_csv(folder / "opportunities.csv", index=False)
    loaded = load(folder).opportunities["team"].dropna()
    assert reports.source_values(folder, "team") == sorted(set(loaded))


def test_for_each_errors_name_the_column_or_parameter(tmp_path, crm):
    bad_column = _config(tmp_path, "  - notebook: 05_pipeline_review\n    for_each: tem\n")
    with pytest.raises(ConfigError, match=r"for_each: 'tem' .*has no 'tem'"):
        load_config(bad_column)  # not a parameter of the notebook
    no_param = _config(tmp_path, "  - notebook: 01_data_quality\n    for_each: team\n")
    with pytest.raises(ConfigError, match=r"reports\[0\] \(01_data_quality\): for_each: 'team'"):
        load_config(no_param)
    (crm.parent / "noteam").mkdir(exist_ok=True)
    opps = pd.read_csv(crm / "opportunities.csv").drop(columns="team")
    opps.to_csv(crm.parent / "noteam" / "opportunities.csv", index=False)
    ok = _config(tmp_path, "  - notebook: 05_pipeline_review\n    for_each: team\n")
    with pytest.raises(ConfigError, match=r"'team' is not a column of the opportunities of source .*noteam"):
        load_config(ok, params={"source": str(crm.parent / "noteam")})
    with pytest.raises(ConfigError, match=r"cannot read the team values of source"):
        load_config(ok, params={"source": str(tmp_path / "nowhere")})
    (crm.parent / "blankteam").mkdir(exist_ok=True)
    opps.assign(team="  ").to_csv(crm.parent / "blankteam" / "opportunities.csv", index=False)
    with pytest.raises(ConfigError, match=r"for_each: 'team': the opportunities of source .*hold no team value"):
        load_config(ok, params={"source": str(crm.parent / "blankteam")})


# ------------------------------------------------------------------------------------ rendered
def _without_teams(crm: Path, folder: Path) -> Path:
    """The CRM with no team column anywhere: 05 shows attainment and coverage per rep."""
    folder.mkdir()
    for path in crm.iterdir():
        if path.suffix == ".csv":
            table = pd.read_csv(path, dtype="str", keep_default_na=False)
            table.drop(columns="team", errors="ignore").to_csv(folder / path.name, index=False)
        else:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def pages(crm, tmp_path_factory):
    """04 and 05 rendered on the 60-rep CRM (04 with a short history: its per-rep section does not depend on it),
    and 05 on the same CRM without teams."""
    out = tmp_path_factory.mktemp("scale-out")
    no_teams = _without_teams(crm, out / "noteams")
    config = out / "reports.yml"
    config.write_text(
        f"notebooks: {REPO / 'notebooks'}\nreports:\n"
        f"  - notebook: 04_forecast_accuracy\n    parameters: {{source: '{crm}', history: 2, n_sims: 100}}\n"
        f"  - notebook: 05_pipeline_review\n    parameters: [{{source: '{crm}'}}, {{source: '{no_teams}'}}]\n",
        encoding="utf-8",
    )
    result = run_reports(config, out / "runs", jobs=2)
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    found = {p.stem: p for p in (out / "runs" / "latest").glob("0*.html")}
    return {
        "04": found["04_forecast_accuracy__crm__2__100"],
        "05": found["05_pipeline_review__crm"],
        "05 without teams": found["05_pipeline_review__noteams"],
    }


def _section(page: str, heading: str) -> str:
    start = page.index(f">{heading}")
    end = page.find("<h2", start)
    return page[start : end if end > 0 else len(page)]


def _folds(section: str, n_reps: int) -> list[list[list[str]]]:
    """Check the fold of a per-rep section; return its open tables."""
    tables = _tables(section)
    folded = [rows for inside, rows in tables if inside]
    opened = [rows for inside, rows in tables if not inside]
    assert len(folded) == 1, "the full table is folded under one <details>"
    assert len(folded[0]) - 1 == n_reps  # every rep
    assert f"… and {n_reps - (len(opened[-1]) - 1)} more reps." in section
    assert len(opened[-1]) - 1 <= FOLD_TOP  # the open part: at most the top reps
    return opened


def test_rendered_pages_fold_the_per_rep_sections(pages, crm):
    opportunities = pd.read_csv(crm / "opportunities.csv")
    n_reps = opportunities["owner"].nunique()
    n_callers = pd.read_csv(crm / "forecast_submissions.csv")["owner"].nunique()  # reps with calls
    assert min(n_reps, n_callers) > FOLD_ABOVE
    teams = sorted(opportunities["team"].unique())
    forecast = pages["04"].read_text(encoding="utf-8")
    calls = _section(forecast, "Rep call ratio")
    rolled, top = _folds(calls, n_callers)
    assert [r[0] for r in rolled[1:]] == [*teams, rollup.ALL_TEAMS]  # the teams, then the company
    assert "the furthest from 100% first" in calls
    ratios = [float(r[4].rstrip("%")) / 100 for r in top[1:]]  # owner, team, periods, calls, call ratio
    folded_ratios = [float(r[4].rstrip("%")) / 100 for r in _tables(calls)[-1][1][1:] if r[4] != "–"]
    assert min(abs(np.log(ratios))) >= sorted(abs(np.log(folded_ratios)))[-FOLD_TOP] - 1e-9  # the most biased
    review = pages["05"].read_text(encoding="utf-8")
    adherence = _section(review, "Adherence to the process map, by rep")
    rolled, _ = _folds(adherence, n_reps)
    assert [r[0] for r in rolled[1:]] == [*teams, rollup.ALL_TEAMS]
    assert "<details" not in _section(review, "Attainment and coverage")  # per team: 4 rows, nothing to fold


def test_rendered_coverage_per_rep_folds_without_teams(pages, crm):
    """Data without teams: attainment and coverage per rep, the company first, then the largest gaps."""
    review = pages["05 without teams"].read_text(encoding="utf-8")
    coverage = _section(review, "Attainment and coverage")
    n_owners = len(_tables(coverage)[-1][1]) - 1
    assert n_owners > FOLD_ABOVE
    company, top = _folds(coverage, n_owners)
    assert len(company) == 2 and company[1][0].startswith("FY")  # the company's row, named by its period
    header = top[0]

    def amount(text: str) -> float:
        return 0.0 if text == "met" else float("nan") if text == "–" else float(text.replace(",", ""))

    left, pipeline = header.index("left to quota"), header.index("open pipeline")
    gap = [amount(r[left]) - amount(r[pipeline]) for r in top[1:]]
    assert gap and not np.isnan(gap).any()
    assert gap == sorted(gap, reverse=True)  # the largest gap first
    # the company row opens the fold: no total row is ranked among the reps, nor listed in the full table
    assert not [r for r in top[1:] + _tables(coverage)[-1][1] if r and r[0].startswith("Total")]
    n_reps = pd.read_csv(crm / "opportunities.csv")["owner"].nunique()  # coverage also lists reps with a quota only
    rolled, _ = _folds(_section(review, "Adherence to the process map, by rep"), n_reps)
    assert [r[0] for r in rolled[1:]] == [rollup.ALL_TEAMS]  # no teams: the company alone


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_rendered_per_rep_sections_stay_short(pages):
    """At 1400x900 the per-rep sections hold in two to three screens at 60 reps (unfolded: four and eight)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    heights = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for key, path in pages.items():
            if key not in ("04", "05"):
                continue
            page.goto(path.as_uri())
            heights[key] = page.evaluate(
                """() => { const top = (e) => e.getBoundingClientRect().top + window.scrollY;
                const hs = Array.from(document.querySelectorAll('h2'));
                return {page: document.body.scrollHeight, sections: Object.fromEntries(hs.map((h, i) =>
                  [h.textContent.replace('¶', '').trim(),
                   (i + 1 < hs.length ? top(hs[i + 1]) : document.body.scrollHeight) - top(h)]))}; }"""
            )
            details = page.locator("details.salesforecast-fold").first
            assert not details.evaluate("d => d.open")  # folded: a reader opens it
            details.locator("summary").click()
            assert details.evaluate("d => d.open") and details.locator("tr").count() > N_REPS // 2
        browser.close()
    # folded at 60 reps: about 1,700 and 2,450 px; unfolded (before the fold): 3,985 and 6,822 px
    assert heights["04"]["sections"]["Rep call ratio"] < 2_400, heights["04"]
    assert heights["05"]["sections"]["Adherence to the process map, by rep"] < 3_600, heights["05"]
    # a report within about ten screens: unfolded, 04 was 10,849 px here and 05 10,347 px; folded, 8,300 and 6,000 px,
    # and 04 with the forecast call section and its headline (merged from another branch) about 9,300 px
    for key, h in heights.items():
        assert h["page"] < 11 * 900, (key, h)
