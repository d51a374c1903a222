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


def _section(text: str, heading: str) -> str:
    section = text[text.index(heading) :]
    return section[: section.index("\n### ", 1)]


def test_the_readme_lists_every_mapping_key_as_the_schema_describes_it():
    """The key table is generated from the schema that checks mapping files: regenerate it when a key changes."""
    from salesforecast.io.mapping import MappingFile, mapping_keys, mapping_keys_markdown

    text = README.read_text(encoding="utf-8")
    begin = text.index("<!-- mapping keys:")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- end of mapping keys -->")
    assert text[begin:end] == mapping_keys_markdown(), (
        "README.md's mapping keys are stale: paste salesforecast.io.mapping.mapping_keys_markdown() between the markers"
    )
    keys = dict(mapping_keys())
    assert set(MappingFile.model_fields) <= set(keys)
    for key in ("tables.TABLE.keep", "tables.TABLE.drop", "tables.TABLE.lookups[].values", "databases.NAME.duckdb"):
        assert keys[key], key
    assert all(keys.values()), [k for k, v in keys.items() if not v]


def test_the_readme_mapping_examples_load(tmp_path):
    """The mapping examples of the README (the two real shapes, DuckDB over CSV files) load as written."""
    import pandas as pd

    from salesforecast.io import load
    from tests.test_real_exports import CLOSED, LEADS, PIPELINE, PRODUCTS, TEAMS

    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", _section(text, "### Mapping keys"), re.S)
    blocks += re.findall(r"```yaml\n(.*?)```", _section(text, "### Databases"), re.S)[1:]
    assert len(blocks) == 3
    pipeline = pd.read_csv(__import__("io").StringIO(PIPELINE), dtype="str")
    pipeline.insert(5, "created_on", "2023-12-01")
    pipeline.to_csv(tmp_path / "sales_pipeline.csv", index=False)
    for name, content in (
        ("products.csv", PRODUCTS),
        ("sales_teams.csv", TEAMS),
        ("leads.csv", LEADS),
        ("closed_deals.csv", CLOSED),
    ):
        (tmp_path / name).write_text(content, encoding="utf-8")
    loaded = []
    for i, block in enumerate(blocks):
        (tmp_path / f"m{i}.yml").write_text(block, encoding="utf-8")
        loaded.append(load(tmp_path / f"m{i}.yml"))
    b2b, funnel, duck = loaded
    assert b2b.counts.loc["opportunities"].tolist() == [6, 5, 1]
    assert b2b.opportunities.set_index("opportunity_id").loc["O4", "created_at"] == pd.Timestamp("2023-12-01")
    assert b2b.opportunities.set_index("opportunity_id")["amount"].to_dict()["O1"] == 1100.0
    assert funnel.counts.loc["leads", "accepted"] == 4 and {"device", "landing_page_id"} <= set(funnel.leads.columns)
    assert duck.counts.loc["opportunities"].tolist() == [6, 4, 2]  # O4: never engaged, no created_at; O5: no close
    duck_opps = duck.opportunities.set_index("opportunity_id")
    assert duck_opps["team"].to_dict()["O2"] == "Melvin"
    assert duck_opps["amount"].to_dict() == b2b.opportunities.set_index("opportunity_id")["amount"].drop("O4").to_dict()
