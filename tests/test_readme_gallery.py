"""The README's "What each report needs, shape by shape" says what the notebooks declare and the gallery holds.

Whether each report did what the table of outcomes says on each shape is checked where the reports run, in
``tests/test_gallery_reports_*.py``.
"""

import ast
import json
import re
from pathlib import Path

from salesforecast.datasets.gallery import SHAPES
from tests.test_gallery_common import NOTEBOOKS, README, STATUSES, readme_outcomes, readme_table

REPO = Path(__file__).resolve().parents[1]


def _declared_needs(notebook: str) -> list[str]:
    """The ``needs=`` of the notebook's `open_report` call (or `open_forecast`'s, which passes them on)."""
    nb = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("open_report", "open_forecast"):
                for kw in node.keywords:
                    if kw.arg == "needs":
                        return list(ast.literal_eval(kw.value))
    return []


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_needs_column_is_what_each_notebook_declares():
    table = readme_table("report").set_index("report")
    assert [r.strip("`") for r in table.index] == NOTEBOOKS
    for report, row in table.iterrows():
        notebook = report.strip("`")
        declared = _declared_needs(notebook)
        assert declared, f"{notebook} declares no needs (open_report(needs=...))"
        assert _names(row["needs"]) == declared, (notebook, declared)


def test_every_need_is_described_as_the_package_describes_it():
    from salesforecast.session import NEEDS

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### What each report needs, shape by shape") :]
    listed = dict(re.findall(r"^- `(\w+)`: (.+)$", section[: section.index("\n## ")], re.M))
    used = {name for nb in NOTEBOOKS for name in _declared_needs(nb)}
    assert used and used <= set(listed), sorted(used - set(listed))
    for name in used:
        assert listed[name] == NEEDS[name].description, name


def test_the_table_of_outcomes_names_every_shape_as_the_gallery_describes_it():
    table = readme_table("shape")
    assert [s.strip("`") for s in table["shape"]] == list(SHAPES)
    assert list(table["what the export holds"]) == [s.description for s in SHAPES.values()]
    outcomes = readme_outcomes()
    assert list(outcomes.columns) == NOTEBOOKS
    assert set(outcomes.to_numpy().ravel()) <= set(STATUSES)
