"""Data flows one way (DESIGN.md): io -> schema -> snapshots -> models -> forecast -> metrics -> plotting -> reports.

Each module may import only modules of its own layer or below; matplotlib only in plotting. `metrics` holds pure
functions of arrays and long tables and imports nothing from the package, so every layer may use it (as
scikit-learn's estimators use sklearn.metrics).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "salesforecast"
LAYERS = {
    "_utils": 0,
    "process": 0,
    "metrics": 0,
    "schema": 1,
    "io": 2,
    "datasets": 2,
    "quality": 2,
    "snapshots": 3,
    "history": 3,
    "models": 4,
    "adherence": 4,
    "movement": 4,
    "leads": 4,
    "review": 5,
    "forecast": 5,
    "simulation": 5,
    "calibration": 6,
    "plotting": 7,
    "reports": 8,
    "cli": 9,
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.startswith("salesforecast.") else module
    return LAYERS[top]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_never_go_upward(path):
    rel = path.relative_to(PACKAGE).with_suffix("")
    own = LAYERS[rel.parts[0]]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "salesforecast" else [f"salesforecast.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("matplotlib"):
                assert rel.parts[0] == "plotting", f"{rel} imports matplotlib"
            if rel.parts[0] == "metrics":
                assert not name.startswith("salesforecast"), "metrics imports nothing from the package"
            if name.startswith("salesforecast."):
                assert _layer(name) <= own, f"{rel} (layer {own}) imports {name} (layer {_layer(name)})"
