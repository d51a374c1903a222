"""Shared fixtures: a small canonical folder with known problems, and tiny test notebooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Known problems (the quarantine reason each row gets):
#   opportunities rows 5 and 9 name stages not in the map (Discovery, Demo)   -> unknown stage
#   row 6 has created_at 2024-13-01                                            -> unparseable date
#   row 7 has a negative amount                                                -> negative amount
#   row 8 repeats O1                                                           -> duplicate id
#   row 9's team is an HTML snippet (untrusted text that must be escaped)
#   row 2 uses an alias spelled in lowercase ("closed won"): accepted as Closed Won
OPPORTUNITIES = """\
opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won,team
O1,ann,2024-01-05,Prospecting,1000,2024-03-31,false,false,EMEA
O2,ann,2024-01-10,closed won,2000,2024-02-15,true,true,EMEA
O3,bo,2024-02-01T09:00:00,Closed Lost,500,2024-02-20,true,false,AMER
O4,bo,2024-02-03,Negotiation/Review,3000,2024-04-30,false,false,AMER
O5,cy,2024-02-10,Discovery,700,2024-05-01,false,false,EMEA
O6,cy,2024-13-01,Prospecting,100,2024-05-01,false,false,EMEA
O7,ann,2024-03-01,Prospecting,-5,2024-05-01,false,false,EMEA
O1,ann,2024-01-05,Prospecting,1000,2024-03-31,false,false,EMEA
O8,dan,2024-03-05,Demo,900,2024-06-30,false,false,<script>alert(1)</script>
O9,dan,2024-03-10,Qualification,400,2024-06-30,false,false,AMER
"""

# Row 7: stage not in the map (and its opportunity O5 is quarantined; the stage is reported first).
# Row 8: OX is no opportunity. Row 10: "yesterday" is no date.
# O3's two changes share one timestamp; O4 has no history; O9's last change (Needs Analysis) is not its
# current stage (Qualification).
STAGE_HISTORY = """\
opportunity_id,changed_at,stage
O1,2024-01-05,Prospecting
O2,2024-01-10,Prospecting
O2,2024-01-20,Negotiation/Review
O2,2024-02-15,Closed Won
O3,2024-02-01T09:00:00,Prospecting
O3,2024-02-01T09:00:00,Closed Lost
O5,2024-02-10,Discovery
OX,2024-02-01,Prospecting
O9,2024-03-10,Prospecting
O9,yesterday,Qualification
O9,2024-03-12,Needs Analysis
"""

# L3 converted before it was created.
LEADS = """\
lead_id,created_at,converted,converted_at,opportunity_id
L1,2024-01-01,true,2024-01-05,O2
L2,2024-01-02,false,,
L3,2024-01-10,true,2024-01-05,
L4,2024-01-12,false,,
"""


def write_crm_folder(folder: Path) -> Path:
    """Write the small canonical folder with known problems to `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opportunities.csv").write_text(OPPORTUNITIES, encoding="utf-8")
    (folder / "stage_history.csv").write_text(STAGE_HISTORY, encoding="utf-8")
    (folder / "leads.csv").write_text(LEADS, encoding="utf-8")
    return folder


@pytest.fixture
def crm_folder(tmp_path: Path) -> Path:
    """A canonical folder (opportunities, stage_history, leads) with known quarantine problems."""
    return write_crm_folder(tmp_path / "crm")


@pytest.fixture
def crm_data(crm_folder: Path):
    """The `CRMData` loaded from `crm_folder`."""
    from salesforecast.schema import read_canonical

    return read_canonical(crm_folder)


def write_notebook(
    path: Path,
    cells: Sequence[str],
    parameters: str = 'name: str = "world"  # who to greet\nn: int = 3  # how many',
    title: str = "Greeting",
) -> Path:
    """Write a small notebook: a markdown title, a ``parameters`` cell, then the given code cells."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {title}"), params, *(new_code_cell(c) for c in cells)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook_factory(tmp_path: Path) -> Callable[..., Path]:
    """``make(name, cells, parameters=..., title=...)`` writes ``tmp_path/notebooks/<name>.ipynb``."""

    def make(name: str, cells: Sequence[str], **kwargs: str) -> Path:
        return write_notebook(tmp_path / "notebooks" / f"{name}.ipynb", cells, **kwargs)

    return make


@pytest.fixture(scope="session")
def sample_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reports of reports.yml on the sample, rendered once per test session: the run's ``latest`` folder.

    Shared by the xdist workers of a session (the first one to ask renders it, under a lock, the others wait and
    read it), so the tests that read the sample's pages pay for one rendering (about 45 s of the six reports).
    Under ``make test`` its readers run on one worker (`SHARED_GROUPS`), so the other never waits for it; a new
    module that reads it belongs there too. Read only: a test that changes a page must copy it first.
    """
    import fcntl
    import os

    from salesforecast.reports import DEFAULT_CONFIG, run_reports

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the session's folder, above each worker's own
        root = root.parent
    out, done = root / "sample-suite", root / "sample-suite.done"
    with open(root / "sample-suite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = run_reports(DEFAULT_CONFIG, out, jobs=1, echo=lambda _: None)
            assert result.exit_code == 0, [r.error for r in result.results if r.error]
            done.write_text(str(len(result.results)), encoding="utf-8")
    return out / "latest"


# ------------------------------------------------------------------------------------------ xdist: groups and order
#: Test modules that run on one xdist worker (``make test``: ``--dist loadfile``, each module on one worker) together
#: with others, because they share a render: the readers of the session's ``sample_suite`` (so that no worker waits
#: while the other renders it), and the modules that read the gallery's run of a shape
#: (`tests.test_gallery_common.shared_shape_run`, kept in the worker's process) with the gallery's file of that shape.
SHARED_GROUPS = {
    **dict.fromkeys(
        [
            "tests/test_reader_pages.py",
            "tests/test_reader_numbers.py",
            "tests/test_report_suite.py",
            "tests/test_deal_lists.py",
            "tests/test_activity_report.py",
        ],
        "sample_suite",
    ),
    "tests/test_report_headlines.py": "tests/test_gallery_reports_a.py",
}
#: Groups handed out first, the longest first, so that the two workers finish together (the many short modules fill
#: in at the end). Measured on one core (``-p no:xdist --durations``): the gallery's two files about 6-7 min each,
#: the sample suite's readers about 3 min; then modules of a few slow tests each (a report rendered or a model fitted
#: per test), which xdist's own order (most tests first) leaves to the very end.
RUN_FIRST = (
    "tests/test_gallery_reports_a.py",
    "tests/test_gallery_reports_b.py",
    "sample_suite",
    "tests/test_reports.py",
    "tests/test_short_reports.py",
    "tests/test_secrets.py",
    "tests/test_oracle_gap.py",
    "tests/test_forecast_report.py",
    "tests/test_forecast_call.py",
    "tests/test_reader_scale.py",
    "tests/test_reader_nav.py",
    "tests/test_schema.py",
    "tests/test_reader_fuzz.py",
    "tests/test_derived_history.py",
    "tests/test_forecast_synthetic.py",
    "tests/test_adherence_unrecorded.py",
    "tests/test_crm_check.py",
)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist loadfile``: each module to one worker as usual, but the modules of `SHARED_GROUPS` as one unit,
    and the units in `RUN_FIRST`'s order, then the others with the most tests first (xdist's own order)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    rank = {name: i for i, name in enumerate(RUN_FIRST)}

    class GroupedFileScheduling(LoadFileScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SHARED_GROUPS.get(file, file)

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the first call: the queue is complete (and in xdist's order)
                self._ordered = True
                for scope in sorted(self.workqueue, key=lambda s: rank.get(s, len(rank))):  # stable
                    self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return GroupedFileScheduling(config, log)
