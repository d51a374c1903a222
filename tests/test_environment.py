"""The environment files agree: environment.yml (conda) and pyproject.toml (pip/uv); the Makefile documents itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _requirement(spec: str) -> tuple[str, str]:
    """``"Pandas_X >= 3.0, <4"`` -> ``("pandas-x", ">=3.0,<4")``: normalised name, sorted bounds."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*", spec)
    assert m, f"cannot read requirement {spec!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    bounds = ",".join(sorted(b.replace(" ", "") for b in m.group(2).split(",") if b.strip()))
    return name, bounds


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _conda() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))


def test_requirement_parser():
    assert _requirement("Scikit_Learn >= 1.5, <2") == ("scikit-learn", "<2,>=1.5")
    assert _requirement("pyyaml") == ("pyyaml", "")


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = dict(_requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = _conda()
    assert env["name"] == "salesforecast"
    assert env["channels"] == ["conda-forge"]
    conda: dict[str, str] = {}
    pip: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
            continue
        name, bounds = _requirement(dep)
        assert name not in conda, f"environment.yml lists {name} twice"
        conda[name] = bounds
    assert conda.pop("python") == project["requires-python"].replace(" ", "")
    assert "pip" in conda and conda.pop("pip") == ""
    assert pip == ["-e ."]
    missing = sorted(set(wanted) - set(conda))
    extra = sorted(set(conda) - set(wanted))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"
    differ = {n: (wanted[n], conda[n]) for n in wanted if wanted[n] != conda[n]}
    assert not differ, f"bounds differ (pyproject, environment.yml): {differ}"


def _targets() -> list[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return re.findall(r"^([a-zA-Z_-]+):.*?## ", text, flags=re.MULTILINE)


def test_makefile_documents_every_target():
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = _targets()
    assert targets[0] == "help"
    assert {"venv", "test", "reports", "lab", "lint", "format", "clean", "distclean"} <= set(targets)
    phony = set(re.search(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE).group(1).split())
    assert set(targets) <= phony
    assert re.search(r"^\.DEFAULT_GOAL := help$", text, flags=re.MULTILINE)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target():
    out = subprocess.run(["make", "-s", "-C", str(REPO)], capture_output=True, text=True, check=True).stdout
    listed = re.findall(r"^  (\S+)\s", out, flags=re.MULTILINE)
    assert listed == _targets()


def test_ci_script_runs_make_test():
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script and "make test" in script
