"""Every path in loads the same CRM: a mapped CSV with none of our column names, a DuckDB file, a PostgreSQL
database (both through a mapping file), each compared table by table with the generator's tables.

(The Salesforce and HubSpot round trips are in tests/test_io_salesforce.py and tests/test_io_hubspot.py.)
"""

import numpy as np
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.io import load, load_mapping
from tests.postgres import postgres_url

#: German column names for the mapped export: none of them is a canonical name.
RENAME = {
    "opportunities": {
        "opportunity_id": "Deal-Nr.",
        "owner": "Verantwortlich",
        "created_at": "Erstellt am",
        "stage": "Phase",
        "amount": "Wert (EUR)",
        "close_date": "Abschluss",
        "is_closed": "Abgeschlossen",
        "is_won": "Gewonnen",
        "team": "Vertriebsteam",
    },
    "stage_history": {
        "opportunity_id": "Deal",
        "changed_at": "Geändert am",
        "stage": "Neue Phase",
        "amount": "Wert",
        "close_date": "Abschlussdatum",
    },
}
TABLES = ("opportunities", "stage_history")


@pytest.fixture(scope="module")
def crm():
    data, _ = generate(n_opportunities=300, seed=4, years=2)
    return data


def _same(back, data):
    assert back.counts["quarantined"].sum() == 0, back.quarantine.head()
    for name in TABLES:
        cols = list(RENAME[name])
        got = getattr(back, name)[cols]
        want = getattr(data, name)[cols]
        pd.testing.assert_frame_equal(
            got.sort_values(cols[:2], ignore_index=True),
            want.sort_values(cols[:2], ignore_index=True),
            check_dtype=False,
        )


def _mapping(source: str, header: str = "", opportunities_extra: str = "") -> str:
    """A mapping file: `source` is a template of each table's source (``{name}`` is the table)."""
    lines = [header, "tables:"]
    for name in TABLES:
        cols = ", ".join(f"{c}: {v!r}" for c, v in RENAME[name].items())
        lines.append(f"  {name}:\n    source: {source.format(name=name)}\n    columns: {{{cols}}}")
        if name == "opportunities" and opportunities_extra:
            lines.append(f"    {opportunities_extra}")
    return "\n".join(lines) + "\n"


def _german(v: float) -> str:
    return "" if np.isnan(v) else f"{v:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")


def test_a_mapped_csv_with_none_of_our_names_loads_the_same_crm(crm, tmp_path):
    for name in TABLES:
        frame = getattr(crm, name)[list(RENAME[name])].rename(columns=RENAME[name])
        text = frame.copy()
        for col in text.columns:  # German number and date formats, ';' separated, latin-1
            if pd.api.types.is_datetime64_any_dtype(text[col]):
                text[col] = text[col].dt.strftime("%d.%m.%Y %H:%M").fillna("")
            elif pd.api.types.is_float_dtype(text[col]):
                text[col] = text[col].map(_german)
            elif pd.api.types.is_bool_dtype(text[col]):
                text[col] = text[col].map({True: "ja", False: "nein"})
        text.to_csv(tmp_path / f"{name}.csv", sep=";", index=False, encoding="latin-1")
    defaults = 'defaults: {encoding: latin-1, delimiter: ";", decimal: ",", thousands: ".", dates: ["%d.%m.%Y %H:%M"]}'
    flags = "values: {is_closed: {ja: true, nein: false}, is_won: {ja: true, nein: false}}"
    mapping = tmp_path / "crm.yml"
    mapping.write_text(_mapping("{name}.csv", defaults, flags), encoding="utf-8")
    _same(load(mapping), crm)


def test_a_duckdb_file_loads_the_same_crm(crm, tmp_path):
    import duckdb

    con = duckdb.connect(str(tmp_path / "crm.duckdb"))
    for name in TABLES:
        frame = getattr(crm, name)[list(RENAME[name])].rename(columns=RENAME[name])  # noqa: F841 (read by DuckDB)
        con.execute(f'create table "{name}" as select * from frame')
    con.close()
    mapping = tmp_path / "crm.yml"
    mapping.write_text(
        _mapping("{{database: lake, table: {name}}}", "databases:\n  lake: {duckdb: crm.duckdb}"), encoding="utf-8"
    )
    _same(load_mapping(mapping), crm)


def test_a_postgresql_database_loads_the_same_crm(crm, tmp_path_factory, tmp_path, monkeypatch):
    import sqlalchemy as sa

    with postgres_url(tmp_path_factory) as url:
        engine = sa.create_engine(url)
        try:
            for name in TABLES:
                frame = getattr(crm, name)[list(RENAME[name])].rename(columns=RENAME[name])
                frame.to_sql(name, engine, schema="public", index=False)
        finally:
            engine.dispose()
        monkeypatch.setenv("CRM_TEST_URL", url.render_as_string(hide_password=False))
        mapping = tmp_path / "crm.yml"
        mapping.write_text(
            _mapping(
                "{{database: warehouse, table: public.{name}}}", "databases:\n  warehouse: {url_env: CRM_TEST_URL}"
            ),
            encoding="utf-8",
        )
        back = load_mapping(mapping)
    _same(back, crm)
    assert all("***" not in s and url.password not in s for s in back.sources.values())
