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
