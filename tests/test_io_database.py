"""read_database: DuckDB files, Parquet through DuckDB, SQLite and a real PostgreSQL server (tests/postgres.py)."""

import logging
import re
import sqlite3
import traceback

import duckdb
import pandas as pd
import pytest

from salesforecast.datasets import generate
from salesforecast.io.database import DatabaseError, mask_url, quote_identifier, read_database
from salesforecast.schema import TABLES, DataFileError, validate
from tests.postgres import postgres_url

ENV = "SALESFORECAST_TEST_DB_URL"


@pytest.fixture(scope="module")
def crm():
    return generate(n_opportunities=300, seed=1)[0]


def _canonical(data, name):
    """The table's canonical columns present in `data` (what an importer would ask for)."""
    return [c.name for c in TABLES[name].columns if c.name in getattr(data, name).columns]


def _same_data(tables, data):
    """Validate raw tables read back from a database and compare them with the original CRM."""
    back = validate(tables, process=data.process)
    assert len(back.quarantine) == 0
    for name in tables:  # a database keeps no row order: compare sorted
        got = getattr(back, name)
        cols = list(got.columns)
        expected = getattr(data, name)[cols]
        pd.testing.assert_frame_equal(
            got.sort_values(cols, ignore_index=True), expected.sort_values(cols, ignore_index=True), check_dtype=False
        )


# ---------------------------------------------------------------------------------------------- mask_url
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://ann:s3cret@db:5432/crm", "postgresql://ann:***@db:5432/crm"),
        ("postgresql+psycopg://ann:p%40ss%2Fw@db/crm", "postgresql+psycopg://ann:***@db/crm"),
        ("mysql://:only-pw@db/crm", "mysql://:***@db/crm"),
        (
            "error at postgresql://a:b@h/d and mssql://c:d@e/f.",
            "error at postgresql://a:***@h/d and mssql://c:***@e/f.",
        ),
        ("host=db user=ann password=s3cret dbname=crm", "host=db user=ann password=*** dbname=crm"),
        ("Driver={x};PWD='s3 cret';Server=y", "Driver={x};PWD=***;Server=y"),
        ("sqlite:///data/crm.db", "sqlite:///data/crm.db"),
        ("postgresql://ann@db/crm", "postgresql://ann@db/crm"),
    ],
)
def test_mask_url(text, expected):
    assert mask_url(text) == expected


def test_quote_identifier():
    assert quote_identifier("a") == '"a"'
    assert quote_identifier('x"; drop table deals; --') == '"x""; drop table deals; --"'
    with pytest.raises(ValueError):
        quote_identifier("")


# ---------------------------------------------------------------------------------------------- entries
@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ({"url": "postgresql://ann:hunter2@db/crm"}, "url_env"),
        ({"duckdb": "a.duckdb", "url_env": "X"}, "exactly one"),
        ({}, "exactly one"),
        ({"duckdb": "a.duckdb", "schema": "sales"}, "'schema'"),
        ({"duckdb": ""}, "non-empty"),
        ("crm.duckdb", "mapping"),
    ],
)
def test_bad_entries_are_refused(db, needle):
    with pytest.raises(DatabaseError, match=needle) as err:
        read_database(db, table="deals")
    assert "hunter2" not in str(err.value)
    assert isinstance(err.value, DataFileError)


def test_unset_variable_is_named(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(DatabaseError, match=f"environment variable {ENV} is not set"):
        read_database({"url_env": ENV}, table="deals")


@pytest.mark.parametrize("text", ["not a url ann:hunter2@db", "postgresql//ann:hunter2@db/crm", "://ann:hunter2@"])
def test_unparseable_url_is_masked(monkeypatch, text):
    monkeypatch.setenv(ENV, text)
    with pytest.raises(DatabaseError, match="does not hold an SQLAlchemy URL") as err:
        read_database({"url_env": ENV}, table="deals")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"table": "a", "query": "select 1"}, {"table": "a", "chunksize": 0}, {"table": "a", "columns": ["x", "x"]}],
)
def test_bad_requests(tmp_path, kwargs):
    duckdb.connect(str(tmp_path / "crm.duckdb")).close()
    with pytest.raises(DatabaseError):
        read_database({"duckdb": "crm.duckdb"}, base_dir=tmp_path, **kwargs)


# ---------------------------------------------------------------------------------------------- DuckDB
@pytest.fixture(scope="module")
def duck_file(tmp_path_factory, crm):
    folder = tmp_path_factory.mktemp("duck")
    odd = pd.DataFrame({"Amount (USD)": [1.5, 2.5], 'we"ird': ["a", "b"], "select": [1, 2]})
    with duckdb.connect(str(folder / "crm.duckdb")) as con:
        con.register("opps", crm.opportunities)
        con.execute("CREATE TABLE opportunities AS SELECT * FROM opps")
        con.register("hist", crm.stage_history)
        con.execute("CREATE TABLE stage_history AS SELECT * FROM hist")
        con.execute("CREATE SCHEMA sales")
        con.register("odd", odd)
        con.execute('CREATE TABLE sales."Odd Names" AS SELECT * FROM odd')
    return folder


def test_duckdb_file_reads_the_columns_asked_for(duck_file, crm):
    cols = ["amount", "opportunity_id", "stage"]
    got = read_database({"duckdb": "crm.duckdb"}, table="opportunities", columns=cols, base_dir=duck_file)
    assert list(got.columns) == cols
    pd.testing.assert_frame_equal(got, crm.opportunities[cols], check_dtype=False)
    assert got["amount"].dtype == "float64" and got["opportunity_id"].dtype == "str"


def test_duckdb_round_trip_through_validate(duck_file, crm):
    tables = {
        name: read_database({"duckdb": "crm.duckdb"}, table=name, columns=_canonical(crm, name), base_dir=duck_file)
        for name in ("opportunities", "stage_history")
    }
    _same_data(tables, crm)


def test_duckdb_chunks_give_the_same_frame(duck_file, caplog):
    db = {"duckdb": str(duck_file / "crm.duckdb")}  # an absolute path needs no base_dir
    whole = read_database(db, table="stage_history")
    with caplog.at_level(logging.DEBUG, logger="salesforecast.io.database"):
        chunked = read_database(db, table="stage_history", chunksize=100)
    pd.testing.assert_frame_equal(chunked, whole)
    chunks = [r for r in caplog.records if re.search(r": chunk \d+ \(", r.getMessage())]
    assert len(chunks) == -(-len(whole) // 100) > 1


def test_columns_match_case_insensitively_when_unambiguous(duck_file, crm):
    got = read_database(
        {"duckdb": "crm.duckdb"}, table="opportunities", columns=["Amount", "STAGE"], base_dir=duck_file
    )
    assert list(got.columns) == ["Amount", "STAGE"]
    assert got["Amount"].tolist() == crm.opportunities["amount"].tolist()


def test_the_entry_name_is_in_messages(duck_file):
    with pytest.raises(DatabaseError, match=r"^database 'local' \{duckdb: crm.duckdb\}: no table 'deals'"):
        read_database({"duckdb": "crm.duckdb"}, table="deals", base_dir=duck_file, name="local")
    with pytest.raises(DatabaseError, match="^database 'warehouse': a literal 'url' is refused"):
        read_database({"url": "x"}, table="deals", name="warehouse")


def test_duckdb_quoted_and_qualified_names(duck_file):
    got = read_database(
        {"duckdb": "crm.duckdb"}, table='sales."Odd Names"', columns=["select", 'we"ird'], base_dir=duck_file
    )
    assert got.to_dict("list") == {"select": [1, 2], 'we"ird': ["a", "b"]}


def test_duckdb_query_with_columns(duck_file, crm):
    got = read_database(
        {"duckdb": "crm.duckdb"},
        query="select opportunity_id, amount * 2 as double_amount from opportunities where not is_closed -- open;",
        columns=["double_amount"],
        base_dir=duck_file,
    )
    expected = crm.opportunities.loc[~crm.opportunities["is_closed"], "amount"] * 2
    assert got["double_amount"].tolist() == expected.tolist()


def test_duckdb_errors_name_the_table_and_column(duck_file, tmp_path):
    db = {"duckdb": "crm.duckdb"}
    with pytest.raises(DatabaseError, match=r"no table 'deals'.*opportunities, stage_history") as err:
        read_database(db, table="deals", base_dir=duck_file)
    assert err.value.table == "deals" and "crm.duckdb" in str(err.value)
    with pytest.raises(DatabaseError, match=r"table 'opportunities' has no column 'amout'; its columns: 'opp") as err:
        read_database(db, table="opportunities", columns=["opportunity_id", "amout"], base_dir=duck_file)
    assert err.value.column == "amout"
    with pytest.raises(DatabaseError, match="no DuckDB file") as err:
        read_database({"duckdb": "missing.duckdb"}, table="deals", base_dir=tmp_path)
    assert str(tmp_path / "missing.duckdb") in str(err.value)
    with pytest.raises(DatabaseError, match="query"):
        read_database(db, query="select nothing from opportunities", base_dir=duck_file)


def test_parquet_through_duckdb(tmp_path, monkeypatch, crm):
    (tmp_path / "deals").mkdir()
    opps = crm.opportunities
    opps.iloc[:150].to_parquet(tmp_path / "deals" / "part-0.parquet")
    opps.iloc[150:].to_parquet(tmp_path / "deals" / "part-1.parquet")
    monkeypatch.chdir(tmp_path.parent)  # relative file names resolve against base_dir, not the working directory
    cols = ["opportunity_id", "close_date", "amount"]
    got = read_database(
        {"duckdb": ":memory:"},
        query="select * from read_parquet('deals/*.parquet') order by opportunity_id",
        columns=cols,
        base_dir=tmp_path,
        chunksize=64,
    )
    pd.testing.assert_frame_equal(got, opps[cols].sort_values("opportunity_id", ignore_index=True), check_dtype=False)
    assert got["close_date"].dtype == "datetime64[us]"


# ---------------------------------------------------------------------------------------------- SQLite
def test_sqlalchemy_sqlite(tmp_path, monkeypatch, crm):
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as con:
        crm.stage_history.to_sql("stage_history", con, index=False)
    monkeypatch.setenv(ENV, f"sqlite:///{path}")
    got = read_database({"url_env": ENV}, table="stage_history", columns=["stage", "opportunity_id"], chunksize=97)
    pd.testing.assert_frame_equal(got, crm.stage_history[["stage", "opportunity_id"]], check_dtype=False)
    with pytest.raises(DatabaseError, match=r"no table 'deals'.*stage_history"):
        read_database({"url_env": ENV}, table="deals")


# ---------------------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="module")
def pg(tmp_path_factory, crm):
    """A throwaway server holding the canonical tables (public schema) and odd names (schema sales)."""
    import sqlalchemy as sa

    with postgres_url(tmp_path_factory) as url:
        engine = sa.create_engine(url)
        try:
            for name, frame in crm.tables.items():
                frame.to_sql(name, engine, index=False)
            with engine.begin() as con:
                con.execute(sa.text("CREATE SCHEMA sales"))
            pd.DataFrame({"Amount (USD)": [1.5, 2.5], 'we"ird': ["a", "b"], "select": [1, 2]}).to_sql(
                "Odd Names", engine, schema="sales", index=False
            )
        finally:
            engine.dispose()
        yield url


@pytest.fixture
def pg_env(pg, monkeypatch):
    monkeypatch.setenv(ENV, pg.render_as_string(hide_password=False))
    return {"url_env": ENV}


def test_postgres_round_trip(pg_env, crm):
    tables = {name: read_database(pg_env, table=name, columns=_canonical(crm, name)) for name in TABLES}
    assert list(tables["opportunities"].columns) == _canonical(crm, "opportunities")
    _same_data(tables, crm)


def test_postgres_chunks_give_the_same_frame(pg_env, caplog):
    whole = read_database(pg_env, table="stage_history")
    with caplog.at_level(logging.DEBUG, logger="salesforecast.io.database"):
        chunked = read_database(pg_env, table="stage_history", chunksize=100)
    pd.testing.assert_frame_equal(chunked, whole)
    chunks = [r for r in caplog.records if re.search(r": chunk \d+ \(", r.getMessage())]
    assert len(chunks) == -(-len(whole) // 100) > 1


def test_postgres_quoted_and_qualified_names(pg_env):
    got = read_database(pg_env, table='sales."Odd Names"', columns=["Amount (USD)", 'we"ird'])
    assert got.to_dict("list") == {"Amount (USD)": [1.5, 2.5], 'we"ird': ["a", "b"]}
    assert read_database(pg_env, table="sales.Odd Names", columns=["select"])["select"].tolist() == [1, 2]


def test_postgres_query(pg_env, crm):
    got = read_database(pg_env, query="SELECT owner, count(*) AS n FROM opportunities GROUP BY owner ORDER BY owner")
    expected = crm.opportunities.groupby("owner").size()
    assert dict(zip(got["owner"], got["n"], strict=True)) == expected.to_dict()
    with pytest.raises(DatabaseError, match="two columns named 'a'"):
        read_database(pg_env, query="SELECT 1 AS a, 2 AS a")
    query = 'SELECT 1 AS "Amount", 2 AS "amount"'  # PostgreSQL: quoted names are case-sensitive
    assert read_database(pg_env, query=query, columns=["amount", "Amount"]).to_dict("list") == {
        "amount": [2],
        "Amount": [1],
    }
    with pytest.raises(DatabaseError, match="several columns match but for case: 'Amount', 'amount'"):
        read_database(pg_env, query=query, columns=["AMOUNT"])


def test_postgres_unknown_table_and_column(pg_env, pg):
    masked = pg.render_as_string(hide_password=True)
    with pytest.raises(DatabaseError, match=r"no table 'deals'.*opportunities") as err:
        read_database(pg_env, table="deals")
    assert masked in str(err.value) and ENV in str(err.value) and err.value.table == "deals"
    with pytest.raises(DatabaseError, match="no table 'sales.deals' in schema 'sales'; tables: Odd Names"):
        read_database(pg_env, table="sales.deals")
    with pytest.raises(DatabaseError, match=r"table 'quotas' has no column 'target'; its columns: ") as err:
        read_database(pg_env, table="quotas", columns=["owner", "target"])
    assert err.value.column == "target"


def _full_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc)) + str(vars(exc))


def test_wrong_password_never_shows_a_password(pg, monkeypatch, caplog):
    wrong = "Wr0ng-Secret!"
    monkeypatch.setenv(ENV, pg.set(password=wrong).render_as_string(hide_password=False))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    with pytest.raises(DatabaseError, match="password authentication failed") as err:
        read_database({"url_env": ENV}, table="opportunities")
    text = _full_text(err.value)
    assert f"{pg.username}:***@127.0.0.1:{pg.port}/{pg.database}" in str(err.value)
    assert "cannot connect" in str(err.value) and ENV in str(err.value)
    for secret in (wrong, pg.password):
        assert secret not in text and secret not in caplog.text


def test_logs_hold_no_password(pg, pg_env, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    frame = read_database(pg_env, table="quotas", chunksize=10)
    with pytest.raises(DatabaseError):
        read_database(pg_env, table="quotas", columns=["nope"])
    assert len(frame) > 0
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)  # sqlalchemy's own logging was captured
    assert any(r.name == "salesforecast.io.database" for r in caplog.records)
    password = pg.password
    for quoted in (password, pg.render_as_string(hide_password=False)):
        assert quoted not in caplog.text
        assert all(quoted not in r.getMessage() for r in caplog.records)
