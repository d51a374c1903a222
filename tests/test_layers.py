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
    "config": 0,
    "folders": 1,
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
    "activities": 4,
    "movement": 4,
    "leads": 4,
    "session": 4,
    "review": 5,
    "rollup": 5,
    "forecast": 5,
    "labels": 5,
    "simulation": 5,
    "calibration": 6,
    "scale": 6,
    "call": 6,
    "plotting": 7,
    "reports": 8,
    "pages": 8,
    "headlines": 8,
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_part(module: str, package: str) -> str | None:
    """The first private component of a package module's name, unless it is `package`'s own (``_utils`` is public)."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if _is_private(part) and part != "_utils" and ".".join(parts[:i]) != package:
            return part
    return None


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines itself: functions, classes, methods, class and ``self.`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.keyword) and node.arg:  # dataclasses.replace(x, _field=...), namedtuple fields
            names.add(node.arg)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("__dict__"):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):  # obj.__dict__["_x"]
                names.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]  # obj.__dict__.setdefault("_x", ...), setattr(obj, "_x", ...)
            if ast.unparse(node.func.value).endswith("__dict__") and isinstance(first, ast.Constant):
                names.add(str(first.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                names.add(str(node.args[1].value))
    return {n for n in names if _is_private(n)}


TREES = {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in MODULES}
PRIVATE_DEFINED = {m: _defined_private_names(t) for m, t in TREES.items()}


def _private_uses(module: str, tree: ast.AST) -> list[str]:
    """Where `module` uses a private name of another package module (see `test_no_private_names_across_modules`)."""
    package = module if PACKAGE.joinpath(*module.split(".")[1:], "__init__.py").exists() else module.rpartition(".")[0]
    found = []
    bound = {}  # local name -> the package module or object it was imported as
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("salesforecast."):
                    if part := _private_part(alias.name, package):
                        found.append(f"line {node.lineno}: import {alias.name} (private module {part})")
                    bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import, resolved against the module's package
                base = ".".join(filter(None, [package.rsplit(".", node.level - 1)[0], base]))
            if base != "salesforecast" and not base.startswith("salesforecast."):
                continue
            if part := _private_part(base, package):
                found.append(f"line {node.lineno}: from {base} import ... (private module {part})")
            for alias in node.names:
                if _is_private(alias.name) and base != module:
                    found.append(f"line {node.lineno}: from {base} import {alias.name}")
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    own = PRIVATE_DEFINED[module]
    elsewhere = set().union(*(names for m, names in PRIVATE_DEFINED.items() if m != module))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        value = node.value
        dotted = ast.unparse(value)
        if isinstance(value, ast.Name) and value.id in bound:
            found.append(f"line {node.lineno}: {value.id}.{node.attr} ({bound[value.id]} is another module's)")
        elif dotted.startswith("salesforecast.") and dotted in bound.values() and dotted != module:
            found.append(f"line {node.lineno}: {dotted}.{node.attr} ({dotted} is another module)")
        elif isinstance(value, ast.Name) and value.id in {"self", "cls"}:
            continue
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        elif node.attr in elsewhere and node.attr not in own:
            found.append(f"line {node.lineno}: {ast.unparse(node)} ({node.attr} is defined in another module)")
    return found


@pytest.mark.parametrize("module", sorted(TREES))
def test_no_private_names_across_modules(module):
    """A module uses other package modules' public names only (DESIGN.md, STYLE.md item 10).

    Checked on the source (AST), so it sees what can be seen without running the code:

    - ``from salesforecast.x import _y`` and ``import``/``from`` of a private module (``salesforecast.x._y``);
      a package may import its own private submodules (``salesforecast.datasets`` imports ``._generate``,
      nobody else does);
    - ``m._y`` where ``m`` was imported from the package (a module, a class, a function): ``schema._MALFORMED``,
      ``StageConversionModel._fit_runs``, and ``salesforecast.x._y`` after ``import salesforecast.x``;
    - ``obj._y`` (an attribute or a method call) on any object but ``self``, ``cls`` or ``super()``, when ``_y`` is
      defined in another package module and not in this one: ``model._fit_runs(...)`` on an instance of another
      module's class. A private name the module defines itself (a function, a class, a method, an attribute it
      assigns, also through ``__dict__`` or ``setattr`` with a string) is the module's own business, so ``other._y``
      between two objects of the same module's class passes. What the AST cannot tell: whose object ``obj`` is, so
      ``obj._y`` on another module's object passes when this module defines a ``_y`` of its own; and names reached
      through ``getattr`` with a string.

    ``salesforecast._utils`` is the package's shared helper module (like scikit-learn's ``utils``): its module name
    has an underscore but its names are public, so ``from salesforecast._utils import isin`` is allowed, and
    ``from salesforecast._utils import _x`` is not.
    """
    found = _private_uses(module, TREES[module])
    assert not found, f"{module} uses private names of other modules:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "seen"),
    [
        ("from salesforecast.io.salesforce import _need", True),
        ("from salesforecast.io import salesforce as sf\nsf._need(df)", True),
        ("import salesforecast.datasets._generate", True),
        ("from salesforecast.datasets._generate import generate", True),
        ("from salesforecast.io.salesforce import read_salesforce\nread_salesforce._cache", True),
        ("def f(frame):\n    return frame._need(1)", True),
        ("from salesforecast._utils import isin", False),
        ("from salesforecast._utils import _hidden", True),
        (
            "class A:\n    def _own(self):\n        return self._need\n"
            "    def g(self, other):\n        return other._own()",
            False,
        ),
        ("def f(t):\n    return t._replace(a=1)", False),
        (  # the module has a _need of its own: still another module's through the dotted import
            "import salesforecast.io.salesforce\ndef _need(x):\n    return x\nsalesforecast.io.salesforce._need(df)",
            True,
        ),
        ("def f(history):\n    return history._codes", True),  # history.py keeps _codes through __dict__
    ],
)
def test_private_use_check_sees_each_form(source, seen):
    """The check above finds each form it claims to find, in a module (reports) that defines none of these names."""
    assert bool(_private_uses("salesforecast.reports", ast.parse(source))) == seen
