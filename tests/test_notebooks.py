"""Every notebook of the suite: thin, parameterised, stored without outputs, and rendering on the sample."""

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

from salesforecast.reports import DEFAULT_CONFIG, run_reports

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
COMMON = ["source", "process", "as_of"]


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


HEADINGS = {
    "01_data_quality": ["Rows read, accepted and quarantined", "Stage names and the process map"],
    "02_stage_conversion": ["Stage by stage", "Funnel", "Where deals go next", "Are the CRM", "Segments"],
    "05_pipeline_review": [
        "Attainment and coverage",
        "How the pipeline moved",
        "Deals at risk",
        "Does following the map pay?",
    ],
}


def test_every_report_renders_on_the_sample(tmp_path, capsys):
    result = run_reports(DEFAULT_CONFIG, tmp_path / "out", jobs=2)
    assert result.exit_code == 0, capsys.readouterr().out
    assert {p.stem for p in NOTEBOOKS} == set(HEADINGS)  # a new notebook gets its headings checked here
    for stem, headings in HEADINGS.items():
        page = (tmp_path / "out" / "latest" / f"{stem}.html").read_text(encoding="utf-8")
        for heading in headings:
            assert heading in page, (stem, heading)
        assert "Traceback" not in page
        assert "<script src=" not in page
        if stem != "01_data_quality":
            assert page.count("data:image/png;base64") >= 2  # the charts are embedded
