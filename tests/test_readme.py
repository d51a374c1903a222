"""The README's Python examples run as written (with a smaller synthetic CRM)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks).replace("n_opportunities=100_000", "n_opportunities=2_000")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert len(namespace["snap"]) > 0
    assert set(namespace["truth"].win_probability.index) == set(namespace["data"].process.open_stages)


def test_readme_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    assert first_block.splitlines()[0].startswith("make reports")
    assert first_block.splitlines()[1].startswith("make test")


def test_the_worked_example_of_a_forecast_method_is_the_code():
    """The developer notes show run_rate's function and registry entry as they stand in the package."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Adding a forecast method") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```py\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    source = " ".join((README.parent / "salesforecast" / "forecast.py").read_text(encoding="utf-8").split())
    for block in blocks:
        assert " ".join(block.split()) in source, block.splitlines()[0]


def _top_level_imports(text: str) -> list[tuple[str, str]]:
    """``(where, name)`` for every name imported with ``from salesforecast import ...`` in `text`."""
    found = []
    for match in re.finditer(r"from salesforecast import ([\w, ]+)", text):
        found += [(match.group(0), name.strip()) for name in match.group(1).split(",") if name.strip()]
    return found


def test_every_top_level_import_in_the_readme_and_notebooks_resolves():
    """``from salesforecast import X`` in the README or a notebook names something the package has (``load``...)."""
    import importlib

    import salesforecast

    texts = [README.read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in sorted((README.parent / "notebooks").glob("*.ipynb"))]
    imports = [item for text in texts for item in _top_level_imports(text)]
    assert ("from salesforecast import SalesProcess, fiscal_period, load, read_canonical", "load") in imports
    for where, name in imports:
        if not hasattr(salesforecast, name):
            importlib.import_module(f"salesforecast.{name}")  # a subpackage or module, e.g. plotting
        assert hasattr(salesforecast, name), where
    assert set(salesforecast.__all__) <= set(dir(salesforecast))
