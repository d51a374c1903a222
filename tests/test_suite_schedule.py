"""The test suite's own schedule (tests/conftest.py): the modules that share a render run on one xdist worker, and
the units handed out first exist. A module that starts reading a shared render without joining its group would
still pass, only slower (its worker waits for, or repeats, the other's render): these checks say so instead."""

import ast
import re
from pathlib import Path

from tests.conftest import RUN_FIRST, SHARED_GROUPS

TESTS = Path(__file__).resolve().parent


def _module(name: str) -> str:
    return f"tests/{name}"


def _uses_fixture(tree: ast.Module, fixture: str) -> bool:
    """A test function or fixture of the module takes `fixture` as an argument."""
    return any(
        isinstance(node, ast.FunctionDef) and fixture in [a.arg for a in node.args.args] for node in ast.walk(tree)
    )


def test_every_reader_of_the_sample_suite_is_in_its_group():
    readers = {
        _module(p.name)
        for p in TESTS.glob("test_*.py")
        if _uses_fixture(ast.parse(p.read_text(encoding="utf-8")), "sample_suite")
    }
    assert readers, "no module reads the sample suite: the group is stale"
    grouped = {module for module, group in SHARED_GROUPS.items() if group == "sample_suite"}
    assert readers == grouped


def test_every_reader_of_a_gallery_run_is_grouped_with_the_gallery_file_of_its_shape():
    shapes_of = {}  # gallery file -> its shapes
    for path in TESTS.glob("test_gallery_reports_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SHAPE_NAMES":
                shapes_of[_module(path.name)] = set(ast.literal_eval(node.value))
    assert len(shapes_of) >= 2
    readers = 0
    for path in TESTS.glob("test_*.py"):
        if path.name.startswith("test_gallery_reports_") or path.name == Path(__file__).name:
            continue
        for shape in re.findall(r"shared_shape_run\(\s*\"(\w+)\"", path.read_text(encoding="utf-8")):
            readers += 1
            group = SHARED_GROUPS.get(_module(path.name))
            assert group in shapes_of and shape in shapes_of[group], (path.name, shape, group)
    assert readers, "no module reads a gallery run: the groups are stale"


def test_the_units_handed_out_first_exist():
    groups = set(SHARED_GROUPS.values())
    for unit in RUN_FIRST:
        assert unit in groups or (TESTS.parent / unit).is_file(), unit
        assert unit not in SHARED_GROUPS, f"{unit} runs in the group {SHARED_GROUPS.get(unit)!r}: name the group"
    assert len(set(RUN_FIRST)) == len(RUN_FIRST)
