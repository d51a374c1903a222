"""What a mapping is trusted to do (issue 18, items 4, 6 and part of 10): it may read the files and databases it
names, and nothing else.

A mapping's ``query:`` is one read-only SELECT run on a locked-down DuckDB connection; YAML aliases cannot blow
up; sources are regular files in the mapping's folder (or folders it lists under ``allow_paths``); messages quote
values only as short, escaped excerpts; a broken mapping says what is wrong and where (line, column, key path).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import duckdb
import pytest

from salesforecast.cli import main
from salesforecast.config import MAX_ALIAS_VALUES, excerpt, names, parse_yaml
from salesforecast.io import load
from salesforecast.io.database import DatabaseError, check_select, read_database
from salesforecast.io.mapping import MappingError, load_mapping, read_mapping

DEALS = (
    "opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won\n"
    "D1,ann,2024-01-02,Prospecting,100,2024-03-01,false,false\n"
    "D2,bo,2024-01-05,Closed Won,250,2024-02-01,true,true\n"
)


def write(folder: Path, mapping: str, deals: str | None = DEALS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if deals is not None:
        (folder / "deals.csv").write_text(deals, encoding="utf-8")
    path = folder / "crm.yml"
    path.write_text(mapping, encoding="utf-8")
    return path


def refused(path: Path) -> MappingError:
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    return info.value


def yaml_query(query: str) -> str:
    """A mapping whose opportunities come from an in-memory DuckDB query (the query as a YAML literal block)."""
    body = "\n".join("        " + line for line in query.splitlines())
    return (
        "databases:\n  files: {duckdb: ':memory:'}\n"
        "tables:\n  opportunities:\n    source:\n      database: files\n      query: |\n"
        f"{body}\n"
    )


# ---------------------------------------------------------------------------------------------- item 4: SQL
def test_a_query_that_closes_its_subquery_cannot_copy_a_file_out(tmp_path):
    target = tmp_path / "written.csv"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-written.csv"
    attack = (
        "select * from read_csv('deals.csv')) q;\n"
        f"COPY (select 42 as x) TO '{target}';\n"
        f"COPY (select 42 as x) TO '{elsewhere}';\n"
        "select * from (select * from read_csv('deals.csv')"
    )
    err = refused(write(tmp_path, yaml_query(attack)))
    assert not target.exists() and not elsewhere.exists()
    assert err.key == "tables.opportunities.source"
    assert str(err).startswith(f"{tmp_path / 'crm.yml'}: tables.opportunities.source: ")
    assert "one SELECT" in str(err)


def test_a_query_that_is_a_copy_statement_is_refused_by_its_type(tmp_path):
    target = tmp_path / "written.csv"
    err = refused(write(tmp_path, yaml_query(f"COPY (select * from read_csv('deals.csv')) TO '{target}'")))
    assert not target.exists()
    assert err.key == "tables.opportunities.source"
    assert "a COPY statement" in str(err)


def test_attach_and_drop_through_a_query_leave_another_duckdb_file_intact(tmp_path):
    store = tmp_path / "store" / "snapshots.duckdb"
    store.parent.mkdir()
    with duckdb.connect(str(store)) as con:
        con.execute("create table snapshots as select range as i from range(3)")
    for inside in (False, True):  # a DuckDB file elsewhere, and one in the mapping's own folder
        target = store if not inside else tmp_path / "m" / "own.duckdb"
        if inside:
            target.parent.mkdir(exist_ok=True)
            with duckdb.connect(str(target)) as con:
                con.execute("create table snapshots as select range as i from range(3)")
        attack = f"select 1 as a) q;\nATTACH '{target}' AS o;\nDROP TABLE o.snapshots;\nselect * from (select 1 as a"
        err = refused(write(tmp_path / "m", yaml_query(attack)))
        assert err.key == "tables.opportunities.source"
        with duckdb.connect(str(target), read_only=True) as con:
            assert con.execute("select count(*) from snapshots").fetchone() == (3,)


@pytest.mark.parametrize(
    "query, kind",
    [
        ("ATTACH 'x.duckdb' AS o", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("select 1; select 2", "2 statements"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ],
)
def test_check_select_refuses_every_statement_but_one_select(query, kind):
    with pytest.raises(DatabaseError, match="must be one SELECT") as info:
        check_select(query, "database 'files'")
    assert kind in str(info.value)


def test_check_select_keeps_what_a_mapping_needs():
    assert check_select("with w as (select 1 as a) select * from w;") == "with w as (select 1 as a) select * from w"
    assert check_select("from read_csv('deals.csv')") == "from read_csv('deals.csv')"
    assert (
        check_select("select 1 as a -- a comment; with a semicolon") == "select 1 as a -- a comment; with a semicolon"
    )


def test_a_duckdb_query_reads_only_in_the_mapping_folder_and_allow_paths(tmp_path, monkeypatch):
    mine, shared = tmp_path / "mine", tmp_path / "shared"
    mine.mkdir()
    shared.mkdir()
    (mine / "deals.csv").write_text(DEALS, encoding="utf-8")
    (shared / "secret.csv").write_text("secret\nhunter2\n", encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "deals.csv").write_text("opportunity_id\nFROM-THE-WORKING-DIRECTORY\n", encoding="utf-8")
    monkeypatch.chdir(cwd)
    db = {"duckdb": ":memory:"}
    got = read_database(db, query="select opportunity_id from read_csv('deals.csv')", base_dir=mine)
    assert got["opportunity_id"].tolist() == ["D1", "D2"]  # the mapping's folder, not the working directory
    assert Path.cwd() == cwd
    for path in (shared / "secret.csv", "../shared/secret.csv", "/etc/passwd"):
        with pytest.raises(DatabaseError, match="allow_paths") as info:
            read_database(db, query=f"select * from read_csv('{path}')", base_dir=mine)
        assert "hunter2" not in str(info.value) and "root:" not in str(info.value)
    got = read_database(
        db, query="select * from read_csv('../shared/secret.csv')", base_dir=mine, allowed_dirs=[shared]
    )
    assert got["secret"].tolist() == ["hunter2"]


def test_a_duckdb_file_query_cannot_switch_the_lock_off(tmp_path):
    with duckdb.connect(str(tmp_path / "crm.duckdb")) as con:
        con.execute("create table deals as select 'D1' as id")
    db = {"duckdb": "crm.duckdb"}
    # one SELECT, but one that would read outside the folder: the connection itself refuses
    with pytest.raises(DatabaseError, match="allow_paths"):
        read_database(db, query="select * from read_text('/etc/hostname')", base_dir=tmp_path)
    assert read_database(db, query="select id from deals", base_dir=tmp_path)["id"].tolist() == ["D1"]


def test_a_query_on_another_database_is_one_statement_in_a_read_only_session(tmp_path, monkeypatch):
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as con:
        con.execute("create table deals (id text)")
        con.execute("insert into deals values ('D1'), ('D2')")
    con.close()
    monkeypatch.setenv("TRUST_DB_URL", f"sqlite:///{path}")
    db = {"url_env": "TRUST_DB_URL"}
    assert read_database(db, query="with d as (select * from deals) select id from d;")["id"].tolist() == ["D1", "D2"]
    with pytest.raises(DatabaseError, match="must be one SELECT"):
        read_database(db, query="select 1 as a) q; delete from deals; select * from (select 1 as a")
    with pytest.raises(DatabaseError, match="must be one SELECT"):
        read_database(db, query="delete from deals returning id")
    with pytest.raises(DatabaseError, match="must be one SELECT"):  # E'\'' ends where PostgreSQL ends it
        read_database(db, query="select E'\\'' as a; delete from deals; select '")
    assert read_database(db, query="select ';' as semicolon")["semicolon"].tolist() == [";"]
    with sqlite3.connect(path) as con:
        assert con.execute("select count(*) from deals").fetchone() == (2,)
    con.close()


# ---------------------------------------------------------------------------------------------- item 6: YAML
def bomb(levels: int, width: int = 10) -> str:
    """A 'billion laughs' YAML: each anchor lists the previous one `width` times."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_bomb_in_skip_rows_is_refused_quickly_with_a_short_message(tmp_path):
    levels = ["&a0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    mapping = "defaults: {skip_rows: [" + ", ".join(levels) + "]}\ntables:\n  opportunities: deals.csv\n"
    assert len(mapping) < 400  # about 1.1 million values once the aliases are written out
    with pytest.raises(MappingError) as info:
        read_mapping(write(tmp_path, mapping))
    message = str(info.value)
    assert "aliases" in message and f"{MAX_ALIAS_VALUES:,}" in message
    assert len(message) < 400 and "\n" not in message


def test_the_process_map_and_report_configuration_share_the_alias_limit(tmp_path):
    from salesforecast.process import ProcessError, SalesProcess

    path = tmp_path / "process.yml"
    path.write_text(bomb(7) + "name: x\nstages: [A, Won]\n", encoding="utf-8")
    with pytest.raises(ProcessError, match="aliases"):
        SalesProcess.from_yaml(path)
    from salesforecast.reports import ConfigError, load_config

    config = tmp_path / "reports.yml"
    config.write_text(bomb(7) + "reports: [01_data_quality]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(config)


def test_an_anchor_that_refers_to_itself_is_refused(tmp_path):
    mapping = "defaults: {missing: &m [n/a, *m]}\ntables:\n  opportunities: deals.csv\n"
    with pytest.raises(MappingError, match=r"refers to itself \(line 1"):
        read_mapping(write(tmp_path, mapping))


def test_aliases_within_the_limit_still_work():
    data = parse_yaml("base: &b {delimiter: ';'}\nother: *b\n" + bomb(4))  # 10**4 values: fine
    assert data["other"] == {"delimiter": ";"} and len(data["a3"]) == 10


def test_a_long_value_is_echoed_only_as_a_short_escaped_excerpt(tmp_path):
    long = "\\e[31m" + "x" * 100_000  # YAML's escape for ESC, then 100,000 characters
    with pytest.raises(MappingError) as info:
        read_mapping(write(tmp_path, f'defaults: {{delimiter: "{long}"}}\ntables:\n  opportunities: deals.csv\n'))
    err = str(info.value)
    assert len(err) < 400 and "\x1b" not in err and "\\x1b[31m" in err and "(100005 characters)" in err


def test_excerpt_and_names_cut_long_values():
    assert excerpt("Closed Won") == "'Closed Won'"
    assert len(excerpt("y" * 10_000)) < 100
    nested: list = []
    for _ in range(50):
        nested = [nested] * 20
    assert len(excerpt(nested)) < 400  # a shared structure that would print as 20**50 items
    assert names(["a", "b"]) == "'a', 'b'"
    many = names(f"column {i}" for i in range(2000))
    assert many.endswith("... (1970 more)") and len(many) < 600


# ---------------------------------------------------------------------------------------------- item 6: sources
def test_a_source_outside_the_mapping_folder_is_refused_before_it_is_read(tmp_path):
    for source in ("/etc/passwd", "../../../../../../etc/passwd", "/etc/shadow"):
        mapping = f"tables:\n  opportunities:\n    source: {{file: '{source}', format: csv}}\n"
        with pytest.raises(MappingError) as info:
            read_mapping(write(tmp_path, mapping))
        message = str(info.value)
        assert info.value.key == "tables.opportunities.source"
        assert "outside the mapping file's folder" in message and "allow_paths" in message
        assert "root:" not in message


def test_a_link_in_the_mapping_folder_to_a_file_elsewhere_is_refused(tmp_path):
    (tmp_path / "deals.csv").symlink_to("/etc/passwd")
    mapping = "tables:\n  opportunities:\n    source: {file: deals.csv}\n"
    err = None
    with pytest.raises(MappingError) as info:
        load_mapping(write(tmp_path, mapping, deals=None))
    err = str(info.value)
    assert "a link to '/etc/passwd'" in err and "root:" not in err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_even_when_its_folder_is_allowed(tmp_path, device):
    mapping = f"allow_paths: /dev\ntables:\n  opportunities:\n    source: {{file: {device}, format: csv}}\n"
    err = refused(write(tmp_path, mapping, deals=None))
    assert "is not a regular file" in str(err) and err.key == "tables.opportunities.source"


def test_a_fifo_source_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "deals.csv"
    os.mkfifo(fifo)

    def feed() -> None:  # on a reader that opens the pipe, this ends the read (the test must not hang)
        try:
            with open(fifo, "w") as w:
                w.write(DEALS)
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        err = refused(write(tmp_path, "tables:\n  opportunities: deals.csv\n", deals=None))
        assert "is not a regular file" in str(err)
    finally:
        try:  # release the writer
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        writer.join(5)


def test_a_folder_as_source_is_refused(tmp_path):
    (tmp_path / "deals.csv").mkdir()
    err = refused(write(tmp_path, "tables:\n  opportunities: deals.csv\n", deals=None))
    assert "is a folder" in str(err)


def test_allow_paths_lets_the_owner_name_a_shared_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "deals.csv").write_text(DEALS, encoding="utf-8")
    mapping = "tables:\n  opportunities: ../shared/deals.csv\n"
    err = None
    with pytest.raises(MappingError) as info:
        read_mapping(write(tmp_path / "mine", mapping, deals=None))
    err = info.value
    assert err.key == "tables.opportunities.source" and "allow_paths" in str(err)
    for allow in ("../shared", str(shared), "[../shared]"):
        data = load_mapping(write(tmp_path / "mine", f"allow_paths: {allow}\n{mapping}", deals=None))
        assert data.counts.loc["opportunities", "accepted"] == 2


def test_allow_paths_must_name_folders(tmp_path):
    with pytest.raises(MappingError, match=r"allow_paths: .*nowhere' is not a folder") as info:
        read_mapping(write(tmp_path, "allow_paths: nowhere\ntables:\n  opportunities: deals.csv\n"))
    assert info.value.key == "allow_paths"


def test_allow_paths_reach_a_duckdb_query(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "deals.csv").write_text(DEALS, encoding="utf-8")
    mapping = yaml_query("select * from read_csv('../shared/deals.csv')")
    err = refused(write(tmp_path / "mine", mapping, deals=None))
    assert "allow_paths" in str(err) and err.key == "tables.opportunities.source"
    data = load_mapping(write(tmp_path / "mine", "allow_paths: ../shared\n" + mapping, deals=None))
    assert data.counts.loc["opportunities", "accepted"] == 2


@pytest.mark.parametrize(
    "mapping, key",
    [
        (
            "databases:\n  db: {duckdb: ../other.duckdb}\n"
            "tables:\n  opportunities: {source: {database: db, table: t}}\n",
            "databases.db.duckdb",
        ),
        ("process: ../process.yml\ntables:\n  opportunities: deals.csv\n", "process"),
        (
            "tables:\n  opportunities: deals.csv\n  stage_history: {from_snapshots: /tmp}\n",
            "tables.stage_history.from_snapshots",
        ),
        (
            "tables:\n  opportunities:\n    source: deals.csv\n    lookups:\n"
            "      - {source: /etc/group, key: owner, columns: {team: x}}\n",
            "tables.opportunities.lookups[0].source",
        ),
    ],
)
def test_every_file_a_mapping_names_is_confined(tmp_path, mapping, key):
    with pytest.raises(MappingError, match="outside the mapping file's folder") as info:
        read_mapping(write(tmp_path / "m", mapping.replace("/etc/group", "{file: /etc/group, format: csv}")))
    assert info.value.key == key


def test_the_example_mapping_reads_only_its_own_folder():
    repo = Path(__file__).resolve().parents[1]
    spec = read_mapping(repo / "examples" / "mapping" / "acme.yml")
    assert spec.allow_paths == ()


# ---------------------------------------------------------------------------------------------- item 10: messages
BROKEN = {
    "syntax": ("tables:\n  opportunities:\n    source: deals.csv\n   columns: {id: Id\n", "line 4, column 4"),
    "duplicate key": ("tables:\n  opportunities:\n    source: deals.csv\n    source: x.csv\n", "line 4, column 5"),
    "tab indent": ("tables:\n\topportunities: deals.csv\n", "line 2, column 1"),
    "python tag": ("tables:\n  opportunities: !!python/object/apply:os.system [echo hi]\n", "line 2, column 18"),
    "non-UTF-8": ("tables:\n  opportunities: d\xe9als.csv\n", "line 2, column 19"),
}
HINTS = {"tab indent": "not tabs", "python tag": "not allowed", "duplicate key": "given twice", "non-UTF-8": "UTF-8"}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_mapping_says_what_and_where_in_one_line(tmp_path, kind, capsys):
    text, where = BROKEN[kind]
    path = tmp_path / "crm.yml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(MappingError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and where in message and "\n" not in message
    assert "not a data source" not in message and "<unicode string>" not in message
    assert HINTS.get(kind, "not valid YAML") in message
    for command in (["validate", str(path)], ["import", str(path), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and where in err


def test_an_item_of_missing_that_is_no_text_is_refused_with_its_key_path(tmp_path):
    for value, key in (("[n/a, {stage: '-'}]", "defaults.missing[1]"), ("[null]", "defaults.missing[0]")):
        mapping = f"defaults: {{missing: {value}}}\ntables:\n  opportunities: deals.csv\n"
        with pytest.raises(MappingError, match="must be a text that means no value") as info:
            read_mapping(write(tmp_path, mapping))
        assert info.value.key == key
    mapping = "tables:\n  opportunities: {source: {file: deals.csv, missing: [[x]]}}\n"
    with pytest.raises(MappingError) as info:
        read_mapping(write(tmp_path, mapping))
    assert info.value.key == "tables.opportunities.source.missing[0]"


@pytest.mark.parametrize(
    "section, key",
    [
        ("values: {industry: {a: b}}", "tables.opportunities.values.industry"),
        ("values: {stage: {Won: Closed Won}, team: {a: b}}", "tables.opportunities.values.team"),
        ("dates: {signed_at: '%d.%m.%Y'}", "tables.opportunities.dates.signed_at"),
        ("numbers: [discount]", "tables.opportunities.numbers"),
    ],
)
def test_a_value_map_for_a_column_the_source_lacks_is_refused(tmp_path, section, key):
    mapping = f"tables:\n  opportunities:\n    source: deals.csv\n    {section}\n"
    err = refused(write(tmp_path, mapping))
    assert err.key == key
    assert "is neither a mapped column nor a column of deals.csv" in str(err)
    assert "'opportunity_id'" in str(err)  # the columns there are


def test_a_value_map_for_a_column_the_source_has_still_applies(tmp_path):
    mapping = "tables:\n  opportunities:\n    source: deals.csv\n    values: {owner: {ann: Ann}}\n"
    data = load_mapping(write(tmp_path, mapping))
    assert sorted(data.opportunities["owner"]) == ["Ann", "bo"]


def test_a_configuration_file_that_is_a_device_is_refused_without_reading_it(tmp_path):
    from salesforecast.config import read_yaml

    assert read_yaml(Path("/dev/zero"), "mapping file") == (None, "is not a regular file; expected a mapping file")
    fifo = tmp_path / "crm.yml"
    os.mkfifo(fifo)
    assert read_yaml(fifo, "mapping file")[1] == "is not a regular file; expected a mapping file"


def test_a_postgresql_query_runs_in_a_read_only_session(tmp_path_factory, monkeypatch):
    """A SELECT calling a function that deletes passes the one-statement check; the read-only session stops it."""
    import sqlalchemy as sa

    from tests.postgres import postgres_url

    with postgres_url(tmp_path_factory) as url:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as con:
                con.execute(sa.text("create table deals as select 'D' || g as id from generate_series(1, 3) g"))
                con.execute(sa.text("create function wipe() returns int language sql as 'delete from deals; select 1'"))
            monkeypatch.setenv("TRUST_PG_URL", url.render_as_string(hide_password=False))
            db = {"url_env": "TRUST_PG_URL"}
            assert read_database(db, query="select id from deals order by id")["id"].tolist() == ["D1", "D2", "D3"]
            with pytest.raises(DatabaseError, match="read-only transaction"):  # one SELECT that writes
                read_database(db, query="select wipe() as x")
            with pytest.raises(DatabaseError, match="must be one SELECT"):
                read_database(db, query="select 1 as a) q; drop table deals; select * from (select 1 as a")
            with engine.connect() as con:
                assert con.execute(sa.text("select count(*) from deals")).scalar() == 3
        finally:
            engine.dispose()
