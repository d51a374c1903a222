"""The notebooks' shared opening (`open_report`) and what the default process map is at every entry point."""

from __future__ import annotations

import ast
import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from salesforecast import forecast
from salesforecast.cli import main
from salesforecast.datasets import generate, load_sample, with_generator_criteria
from salesforecast.io import load, load_mapping, read_hubspot, read_salesforce, write_salesforce
from salesforecast.process import FiscalCalendar, SalesProcess
from salesforecast.quality import report_as_of
from salesforecast.review import step_review
from salesforecast.schema import read_canonical
from salesforecast.session import READS, ReportNeeds, open_report
from salesforecast.snapshots import LEAD_CUT_COLUMNS, known_at

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _code_cells(path: Path) -> list[tuple[list[str], str]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c["metadata"].get("tags", []), "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


def _parameters(path: Path) -> dict[str, object]:
    source = next(src for tags, src in _code_cells(path) if "parameters" in tags)
    return {n.target.id: ast.literal_eval(n.value) for n in ast.parse(source).body if isinstance(n, ast.AnnAssign)}


# ------------------------------------------------------------------------------------------------ open_report
def test_open_report_is_the_steps_the_notebooks_took():
    report = open_report("sample", process="default", as_of="2025-06-30", team="EMEA", owner="", period="current")
    data = load("sample")
    as_of = report_as_of(data, "2025-06-30")
    assert report.as_of == as_of and report.team == "EMEA" and report.owner is None
    pd.testing.assert_frame_equal(report.data.opportunities, data.opportunities)
    expected = known_at(data, as_of)
    pd.testing.assert_frame_equal(report.known.opportunities, expected.opportunities)
    pd.testing.assert_frame_equal(report.view.opportunities, expected.filter(team="EMEA").opportunities)
    pd.testing.assert_frame_equal(report.selection.leads, data.filter(team="EMEA").leads)
    assert report.period == data.process.calendar.resolve("current", as_of) == "FY2025Q2"
    assert report.period_bounds == data.process.calendar.period_bounds("FY2025Q2")
    assert report.notes == data.notes


def test_open_report_builds_views_only_when_read():
    report = open_report("sample")
    assert report.as_of == load_sample().as_of and report.period is None
    assert not {"known", "view", "selection"} & vars(report).keys()
    with pytest.raises(ValueError, match="no period"):
        _ = report.period_bounds


def test_a_team_or_rep_the_data_do_not_hold_is_a_needs_page_not_a_traceback(tmp_path):
    with pytest.raises(ReportNeeds, match="team 'nobody' is not in the data; teams: ") as err:
        open_report("sample", team="nobody")
    assert "Leave team and owner empty" in err.value.payload()["fixes"][0]
    with pytest.raises(ReportNeeds, match="owner 'nobody' is not in the data"):
        open_report("sample", owner="nobody")
    data = load_sample()
    no_teams = replace(data, opportunities=data.opportunities.drop(columns="team"))
    no_teams.to_folder(tmp_path / "no-teams")
    with pytest.raises(ReportNeeds, match="asked for team 'EMEA': opportunities has no 'team' column"):
        open_report(tmp_path / "no-teams", team="EMEA")
    report = open_report("sample", team="EMEA")  # a team the data hold: the selection is ready, the view lazy
    assert set(report.selection.opportunities["team"]) == {"EMEA"} and "view" not in vars(report)


@pytest.mark.parametrize("owner", ["", "Ava Chen"])
def test_reads_keep_only_the_columns_the_reports_read_and_change_none_of_their_numbers(owner):
    """04 and 05 open the data with ``columns=READS``: fewer columns in memory, the same backtest and step review."""
    full = open_report("sample", owner=owner)
    lean = open_report("sample", owner=owner, columns=READS)
    acts, leads = lean.data.activities, lean.data.leads
    assert list(acts.columns) == [c for c in full.data.activities.columns if c in READS["activities"]]
    assert list(leads.columns) == [c for c in full.data.leads.columns if c in READS["leads"]]
    assert {"subject", "outcome", "activity_id"} & set(full.data.activities.columns) and "lead_source" not in leads
    for name in ("activities", "leads"):  # the same rows; the columns kept are the same values
        kept = getattr(lean.data, name)
        pd.testing.assert_frame_equal(kept, getattr(full.data, name)[list(kept.columns)])
    pd.testing.assert_frame_equal(lean.data.opportunities, full.data.opportunities)
    pd.testing.assert_frame_equal(lean.data.quarantine, full.data.quarantine)
    pd.testing.assert_frame_equal(lean.data.counts, full.data.counts)
    assert lean.notes == full.notes and lean.as_of == full.as_of
    # every method of the backtest (the opportunity score with its activity features among them) and the review of
    # each step (exit criteria from activities, first responses to leads) read nothing that was dropped
    pd.testing.assert_frame_equal(
        forecast.backtest(lean.view, periods=2, n_sims=100, seed=0),
        forecast.backtest(full.view, periods=2, n_sims=100, seed=0),
    )
    a, b = step_review(lean.view, lean.as_of), step_review(full.view, full.as_of)
    assert a.note == b.note
    for name in ("criteria", "outcomes", "gaps", "responses"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            pd.testing.assert_frame_equal(x, y)


def test_columns_asked_never_drop_what_says_whose_a_row_is_and_when(tmp_path):
    """Asking for no lead column still keeps the ids, dates, owner and team: with a lead conversion the data's last
    event, the report date, the known-at cut and a rep filter are those of the whole data."""
    data = load_sample()
    leads = data.leads.copy()
    last = data.as_of + pd.Timedelta(days=9)
    i = int(leads.index[~leads["converted"].to_numpy(dtype=bool)][0])
    leads.loc[i, "converted"], leads.loc[i, "converted_at"] = True, last
    folder = tmp_path / "crm"
    replace(data, leads=leads).to_folder(folder)
    owner = str(leads.loc[i, "owner"])
    full = open_report(folder, owner=owner)
    lean = open_report(folder, owner=owner, columns={"leads": (), "activities": ()})
    assert full.as_of == lean.as_of == report_as_of(load(folder), "latest") and full.data.as_of == last
    assert list(lean.data.leads.columns) == [c for c in full.data.leads.columns if c in {*LEAD_CUT_COLUMNS, "owner"}]
    assert list(lean.data.activities.columns) == ["occurred_at", "opportunity_id", "lead_id"]
    for name in ("leads", "activities"):
        kept = getattr(lean.view, name)
        pd.testing.assert_frame_equal(kept, getattr(full.view, name)[list(kept.columns)])


def test_columns_a_table_lacks_are_skipped_and_other_tables_kept_whole():
    report = open_report("sample", columns={"activities": ("type", "occurred_at", "no_such_column")})
    assert list(report.data.activities.columns) == ["occurred_at", "type", "opportunity_id", "lead_id"]  # its order
    pd.testing.assert_frame_equal(report.data.leads, load("sample").leads)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_opens_with_one_call(path):
    code = "\n".join(src for tags, src in _code_cells(path) if "parameters" not in tags)
    # the forecast-accuracy report opens partitions too (`open_forecast`, which calls `open_report` for the rest)
    assert code.count("open_report(") + code.count("open_forecast(") == 1
    for step in ("load(", "known_at(", "report_as_of(", ".filter("):
        assert step not in code, f"{path.name} still takes the opening step {step} itself"
    assert _parameters(path)["process"] == "default"


# ------------------------------------------------------------------------------------------------ default process
def _own_process() -> SalesProcess:
    """A process map no source would fall back to: Salesforce's stages, another name and fiscal year."""
    base = SalesProcess.default()
    return SalesProcess(base.stages, name="Acme", calendar=FiscalCalendar(2))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[Path, SalesProcess]]:
    """One source of each kind with its own process map, and that map."""
    tmp = tmp_path_factory.mktemp("sources")
    own = _own_process()
    data, _ = generate(n_opportunities=60, seed=3, process=own, activities=False)  # no criteria attached: own map
    hubspot = tmp / "deals.csv"
    hubspot.write_text(
        "Record ID,Deal Stage,Create Date,Close Date,Amount,Deal owner\n"
        "1,Appointment Scheduled,2024-01-02,2024-03-01,100,ann\n",
        encoding="utf-8",
    )
    from salesforecast.io.hubspot import hubspot_process

    mapping = REPO / "examples" / "mapping" / "acme.yml"
    salesforce = write_salesforce(data, tmp / "salesforce")
    from_export = read_salesforce(salesforce).process  # OpportunityStage.csv and Organization.csv
    assert from_export.calendar == own.calendar and from_export != SalesProcess.default()
    return {
        "canonical": (data.to_folder(tmp / "canonical"), own),
        "salesforce": (salesforce, from_export),
        "hubspot": (hubspot, hubspot_process()),
        "mapping": (mapping, SalesProcess.from_yaml(mapping.parent / "process.yml")),
        "sample": ("sample", load_sample().process),
    }


@pytest.mark.parametrize("kind", ["canonical", "salesforce", "hubspot", "mapping", "sample"])
def test_default_process_is_the_sources_own_at_every_entry_point(kind, sources, capsys):
    """None and "default" give the same map through load, the loaders, open_report (the notebooks' parameter,
    whose default is "default") and the command line: the source's own (SalesProcess.resolve's docstring)."""
    source, own = sources[kind]
    readers = {
        "canonical": read_canonical,
        "salesforce": read_salesforce,
        "hubspot": read_hubspot,
        "mapping": load_mapping,
        "sample": lambda _, process: load_sample(process),
    }
    for process in (None, "default"):
        assert load(source, process=process).process == own
        assert readers[kind](source, process=process).process == own
        assert open_report(source, process=process).data.process == own
    printed = []
    for args in ([], ["--process", "default"]):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["validate", str(source), *args]) == 0
        printed.append(next(line for line in out.getvalue().splitlines() if line.startswith("process:")))
    assert printed[0] == printed[1] and printed[0].startswith(f"process: {own.name} (")
    if kind != "hubspot":  # HubSpot's own pipeline has other stage names: its deals are quarantined
        assert load(source, process="salesforce").process == SalesProcess.default()


def test_default_process_without_a_source_is_salesforces():
    default = SalesProcess.default()
    assert SalesProcess.resolve(None) == SalesProcess.resolve("default") == SalesProcess.resolve("salesforce")
    assert SalesProcess.resolve("default") == default
    simulated = with_generator_criteria(default)  # generate attaches the exit criteria its activities follow
    assert generate(n_opportunities=20, seed=1)[0].process == simulated
    assert generate(n_opportunities=20, seed=1, process="default")[0].process == simulated
    assert generate(n_opportunities=20, seed=1, activities=False)[0].process == default
    assert load_sample().process == simulated  # the sample's process.yml: Salesforce's standard map and those criteria


def test_default_process_of_a_model_is_the_datas_own():
    """StageConversionModel(process="default") learns on the data's own map, as process=None does."""
    from salesforecast.io.hubspot import hubspot_process
    from salesforecast.models import StageConversionModel

    hubspot_like = generate(n_opportunities=300, seed=2, process=hubspot_process())[0]
    for process in (None, "default"):
        model = StageConversionModel(n_bootstrap=0, process=process).fit(hubspot_like)
        assert model.process_ == hubspot_like.process
    model = StageConversionModel(n_bootstrap=0, process="salesforce")
    with pytest.raises(ValueError, match="is not a stage of the process map"):
        model.fit(hubspot_like)


# ------------------------------------------------------------------------------------------------ report needs
@pytest.fixture(scope="module")
def small_crm():
    return generate(n_opportunities=300, seed=5, years=2)[0]


def _lacking(data, needs, as_of=None):
    from salesforecast.session import missing_needs

    return {need.name: text for need, text in missing_needs(data, as_of or data.as_of, needs)}


ALL_NEEDS = [
    "any_table",
    "opportunities",
    "stage_history",
    "leads",
    "converted_leads",
    "closed_deals",
    "won_deals",
    "forecast_submissions",
    "quotas",
]


def test_a_full_crm_meets_every_need(small_crm):
    assert _lacking(small_crm, ALL_NEEDS) == {}
    # before the data begins, nothing dated is there yet
    early = _lacking(small_crm, ALL_NEEDS, pd.Timestamp("2000-01-01"))
    # (closed and won deals, converted leads: lacking for the same reason as opportunities and leads, said once)
    assert set(early) == {"opportunities", "stage_history", "leads", "forecast_submissions"}
    assert set(_lacking(small_crm, ["won_deals", "converted_leads"], pd.Timestamp("2000-01-01"))) == {
        "won_deals",
        "converted_leads",
    }
    assert early["leads"] == "no lead was created on or before the report date 2000-01-01"


def test_each_need_names_what_the_data_lacks(small_crm):
    from dataclasses import replace

    data = small_crm
    no_tables = replace(
        data,
        leads=data.leads.iloc[:0],
        forecast_submissions=data.forecast_submissions.iloc[:0],
        quotas=data.quotas.iloc[:0],
        stage_history=data.stage_history.iloc[:0],
    )
    lacking = _lacking(no_tables, ALL_NEEDS)
    assert set(lacking) == {"stage_history", "leads", "forecast_submissions", "quotas"}  # converted: said by leads
    assert "no stage history" in lacking["stage_history"] and "no leads" in lacking["leads"]

    # creation rows only (one change per deal), and a migration's single timestamp: no deal is seen moving
    hist = data.stage_history
    first = hist.drop_duplicates("opportunity_id")
    assert (
        "never shows a deal moving" in _lacking(replace(data, stage_history=first), ["stage_history"])["stage_history"]
    )
    one_moment = hist.assign(changed_at=pd.Timestamp("2024-01-01"))
    assert "stage_history" in _lacking(replace(data, stage_history=one_moment), ["stage_history"])
    moving = pd.concat([first, hist[hist["opportunity_id"] == first["opportunity_id"].iloc[0]]])
    assert _lacking(replace(data, stage_history=moving), ["stage_history"]) == {}  # one deal moving is enough

    opps = data.opportunities
    lost = replace(data, opportunities=opps.assign(is_won=False))
    lacking = _lacking(lost, ["closed_deals", "won_deals"])
    assert set(lacking) == {"closed_deals", "won_deals"}
    assert "was won with a close date" in lacking["won_deals"]
    assert "were lost, none won" in lacking["closed_deals"]
    # an export of won deals alone: every stage would look certain to win
    won_only = replace(data, opportunities=opps.assign(is_won=opps["is_closed"]))
    lacking = _lacking(won_only, ["closed_deals", "won_deals"])
    assert set(lacking) == {"closed_deals"} and "were won, none lost" in lacking["closed_deals"]
    leads = data.leads
    assert (
        "had converted"
        in _lacking(replace(data, leads=leads.assign(converted=False)), ["converted_leads"])["converted_leads"]
    )
    assert (
        "nothing to tell apart"
        in _lacking(
            replace(data, leads=leads.assign(converted=True, converted_at=leads["created_at"])), ["converted_leads"]
        )["converted_leads"]
    )


def test_quarantined_tables_are_told_apart_from_missing_ones(tmp_path):
    from salesforecast.session import missing_needs

    data = load(write_crm_folder_all_bad(tmp_path))
    ((need, text),) = missing_needs(data, pd.Timestamp("2024-06-30"), ["opportunities"])
    assert need.name == "opportunities" and text.startswith("all 2 rows of opportunities read were quarantined")


def write_crm_folder_all_bad(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "opportunities.csv").write_text(
        "opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won\n"
        "O1,ann,2024-13-01,Prospecting,1,2024-03-01,false,false\n"
        "O2,ann,2024-01-01,Nowhere,1,2024-03-01,false,false\n",
        encoding="utf-8",
    )
    return folder


def test_open_report_raises_report_needs_with_every_missing_need(small_crm, tmp_path):
    import salesforecast
    from salesforecast.session import ReportNeeds

    assert salesforecast.ReportNeeds is ReportNeeds and issubclass(ReportNeeds, ValueError)
    data = small_crm.filter()  # a copy
    data.stage_history = data.stage_history.iloc[:0]
    data.leads = data.leads.iloc[:0]
    data.activities = data.activities[data.activities["lead_id"].isna()]  # the leads' activities go with them
    data.notes = ("Owners of <script>alert(1)</script> are known by id only.",)
    folder = data.to_folder(tmp_path / "crm")
    with pytest.raises(ReportNeeds) as caught:
        open_report(folder, needs=("opportunities", "stage history", "leads", "won_deals"))
    error = caught.value
    assert str(error).startswith("This report needs stage history and leads, which the data lacks: the source ")
    assert len(error.needs) == len(error.lacking) == 2 == len(error.fixes)
    assert error.needs[0].startswith("a stage history") and error.needs[1].startswith("leads:")
    assert error.lacking[1] == "The source provides no leads (no leads table, or an empty one)."
    assert "derive_from_dates" in error.fixes[0] and "tables.leads" in error.fixes[1]
    assert error.notes == data.notes
    assert error.payload()["notes"] == list(data.notes)
    assert open_report(folder, needs=("opportunities", "won_deals")).data.notes == data.notes
    with pytest.raises(ValueError, match="no report need 'lead'; the needs: any_table, opportunities"):
        open_report(folder, needs=("lead",))


def test_record_limits_does_nothing_outside_a_kernel():
    import warnings

    from salesforecast.session import record_limits

    before = warnings.showwarning
    assert record_limits() is False
    assert warnings.showwarning is before


def test_rows_set_aside_reach_the_reports_notes(crm_folder, crm_data):
    """Quarantined rows are in no number of a report: open_report says how many, of how many, and why."""
    report = open_report(crm_folder, as_of="2024-06-30")
    q = crm_data.quarantine
    assert len(q)  # the fixture has known problems
    said = [n for n in report.notes if "were set aside (quarantined)" in n]
    assert len(said) == q["table"].nunique()
    for table, rows in q.groupby("table"):
        n, read = rows["row"].nunique(), int(crm_data.counts.loc[table, "read"])
        line = next(s for s in said if f"of the {read:,} {table.replace('_', ' ')} rows read" in s)
        assert line.startswith(f"{n:,} of the {read:,}") and rows["reason"].iloc[0] in line
    assert not [n for n in open_report("sample").notes if "set aside" in n]  # nothing set aside, nothing said
