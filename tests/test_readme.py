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
