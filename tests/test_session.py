"""The notebooks' shared opening (`open_report`) and what the default process map is at every entry point."""

from __future__ import annotations

import ast
import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from salesforecast.cli import main
from salesforecast.datasets import generate, load_sample
from salesforecast.io import load, load_mapping, read_hubspot, read_salesforce, write_salesforce
from salesforecast.process import FiscalCalendar, SalesProcess
from salesforecast.quality import report_as_of
from salesforecast.schema import read_canonical
from salesforecast.session import open_report
from salesforecast.snapshots import known_at

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
    report = open_report("sample", team="nobody")
    assert report.as_of == load_sample().as_of and report.period is None
    assert not {"known", "view", "selection"} & vars(report).keys()
    with pytest.raises(ValueError, match="team 'nobody' is not in the data"):
        _ = report.view
    with pytest.raises(ValueError, match="no period"):
        _ = report.period_bounds


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_opens_with_one_call(path):
    code = "\n".join(src for tags, src in _code_cells(path) if "parameters" not in tags)
    assert code.count("open_report(") == 1
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
    data, _ = generate(n_opportunities=60, seed=3, process=own)
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
    assert generate(n_opportunities=20, seed=1)[0].process == default
    assert generate(n_opportunities=20, seed=1, process="default")[0].process == default
    assert load_sample().process == default  # the sample's process.yml is Salesforce's standard map


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
