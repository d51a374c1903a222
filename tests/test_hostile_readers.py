"""Hostile and broken input files (issue 18): no row merged or lost silently, and one clear line for each user error.

Each test builds its input in `tmp_path`; the canonical files are written as text here (no generator) so that the
exact physical lines are known: every line after the header is one row, read = accepted + quarantined.
"""

import codecs
import gzip
import json
import warnings

import pandas as pd
import pytest

from salesforecast.cli import main
from salesforecast.io import load, load_mapping
from salesforecast.io.mapping import MappingError
from salesforecast.io.sources import parse_dates, parse_number, read_file_source
from salesforecast.schema import DataFileError, csv_records, is_malformed, read_canonical, read_table_file, validate

HEADER = "opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won,team"


def _row(i: int) -> str:
    return (
        f"O{i:05d},rep{i % 7},2024-01-{i % 28 + 1:02d}T10:00:00,Prospecting,{100 + i}.0,2024-06-30,false,false,t{i % 3}"
    )


def _lines(n: int) -> list[str]:
    """The physical lines of an opportunities.csv with `n` valid rows (line k + 1 holds row O{k:05d})."""
    return [HEADER] + [_row(i) for i in range(1, n + 1)]


def _folder(tmp_path, lines: list[str] | bytes, name: str = "opportunities.csv"):
    folder = tmp_path / "crm"
    folder.mkdir(exist_ok=True)
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode("utf-8")
    (folder / name).write_bytes(data)
    return folder


def _counts(data) -> list[int]:
    return data.counts.loc["opportunities"].tolist()


def _no_merged_values(data) -> None:
    text = data.opportunities.select_dtypes(include=["str", "object"])
    for c in text.columns:
        assert not text[c].astype("str").str.contains("\n", regex=False).fillna(False).any(), c


# ---------------------------------------------------------------------------------------------- 1: silent row loss
def test_an_unbalanced_quote_on_line_101_quarantines_that_line_and_keeps_every_other_row(tmp_path):
    lines = _lines(3000)
    lines[100] = '"' + lines[100]  # line 101 (row O00100), as in the issue: one quote, never closed
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [3000, 2999, 1]  # on main: 2244 read, 0 quarantined, exit 0
    q = data.quarantine.iloc[0]
    assert q["reason"] == "malformed row" and q["row"] == 100
    assert "line 101" in q["value"] and "unbalanced" in q["value"]
    original = json.loads(q["original"])
    assert original["line"] == 101 and original["fields"] == [lines[100]]
    assert "O00100" not in set(data.opportunities["opportunity_id"])
    assert len(data.opportunities) == 2999 and data.opportunities["opportunity_id"].iloc[-1] == "O03000"
    _no_merged_values(data)


def test_a_pair_of_stray_quotes_does_not_merge_the_rows_between_them(tmp_path):
    lines = _lines(40)
    lines[10] = '"' + lines[10]  # opens on line 11 ...
    lines[19] = '"' + lines[19]  # ... and the next quote (line 20) would close it: lines 11-19 merged into one value
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [40, 38, 2]
    q = data.quarantine.sort_values("row")
    assert q["row"].tolist() == [10, 19]
    assert "line 11" in q["value"].iloc[0] and "line 20" in q["value"].iloc[1]
    assert {f"O{i:05d}" for i in range(11, 19)} <= set(data.opportunities["opportunity_id"])
    _no_merged_values(data)


def test_a_quote_closed_at_the_end_of_a_later_line_is_not_a_value_of_two_fields(tmp_path):
    lines = _lines(30)
    lines[5] = lines[5].replace(",rep", ',"rep', 1)  # line 6 opens a quote in the owner field ...
    lines[8] += '"'  # ... which line 9 closes at its end: one record of too few fields
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [30, 29, 1]
    assert "line 6" in data.quarantine["value"].iloc[0]
    _no_merged_values(data)


def test_a_quoted_value_with_line_breaks_and_commas_is_one_row(tmp_path):
    lines = _lines(5)
    lines[0] += ",note"
    lines[1:] = [line + "," for line in lines[1:]]
    lines[2] += '"Met at the fair, twice.\nWants A, B\nand C."'  # a real multi-line value: three physical lines
    data = read_canonical(_folder(tmp_path, "\n".join(lines).split("\n")))
    assert _counts(data) == [5, 5, 0]
    assert data.opportunities["note"].iloc[1] == "Met at the fair, twice.\nWants A, B\nand C."


def test_a_line_with_too_many_fields_names_its_line_and_keeps_its_fields(tmp_path):
    lines = _lines(6)
    lines[3] = lines[3].replace("Prospecting,", "Prospecting,1,", 1)
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [6, 5, 1]
    q = data.quarantine.iloc[0]
    assert q["value"] == "line 4 has 10 fields where the header has 9"
    assert json.loads(q["original"])["fields"][3:5] == ["Prospecting", "1"]


def test_a_line_ending_in_one_extra_field_is_malformed_not_silently_cut(tmp_path):
    # pandas' index_col=False read dropped the tenth value of such a line with only a ParserWarning
    lines = _lines(4)
    lines[2] += ",surplus"
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [4, 3, 1]
    assert json.loads(data.quarantine["original"].iloc[0])["fields"][-1] == "surplus"


def test_trailing_delimiters_and_blank_lines_keep_their_rows(tmp_path):
    lines = [line + ",," for line in _lines(4)]
    lines.insert(3, "")
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [5, 4, 1]
    assert data.quarantine["reason"].tolist() == ["empty row"]


def test_crlf_and_cr_line_ends_count_as_lines(tmp_path):
    lines = _lines(6)
    text = "\r\n".join(lines[:4]) + "\r" + "\r".join(lines[4:]) + "\r\n"
    data = read_canonical(_folder(tmp_path, text.encode()))
    assert _counts(data) == [6, 6, 0]


def test_a_quote_in_the_header_is_refused_naming_the_line(tmp_path):
    lines = _lines(3)
    lines[0] = lines[0].replace("owner", '"owner', 1)
    with pytest.raises(DataFileError, match=r"opportunities.csv: the header \(line 1\) cannot be read"):
        read_canonical(_folder(tmp_path, lines))


def test_csv_records_give_each_physical_line_one_record():
    text = 'a,b\n1,2\n"3,4\n5,6\n"7",8\n9,"x\ny"\n'
    records = csv_records(text)
    assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2].fields is None and "line 3" in records[2].problem
    assert records[3].fields == ["5", "6"] and records[4].fields == ["7", "8"]
    assert records[5].fields == ["9", "x\ny"]  # two physical lines, one legitimate record
    # a quote opening in one row and one closing in the next: each line holds a whole row, so no value spans them
    pair = csv_records('a,b,c\n0,1,2\n1,"2,3\n4,5",6\n')
    assert [r.fields for r in pair] == [["a", "b", "c"], ["0", "1", "2"], None, ["4", '5"', "6"]]
    assert "both lines hold a whole row" in pair[2].problem
    # the same two lines where no row is on one line (nothing to compare with): a value with a line break
    assert csv_records('a,b,c\n1,"2,3\n4,5",6\n')[1].fields == ["1", "2,3\n4,5", "6"]


# ---------------------------------------------------------------------------------------------- 9: tracebacks
def _cli_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_corrupt_csv_gz_is_one_line_naming_the_file(tmp_path, capsys):
    folder = _folder(tmp_path, _lines(3))
    packed = gzip.compress((folder / "opportunities.csv").read_bytes())
    (folder / "opportunities.csv").unlink()
    (folder / "opportunities.csv.gz").write_bytes(packed[: len(packed) // 2])  # truncated: EOFError on main
    err = _cli_error(["validate", str(folder)], capsys)
    assert "opportunities.csv.gz: not a readable gzip file" in err and "compress" in err


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "the file is empty"),
        (bytes(range(256)) * 8, "not a text file"),
        (b"table,row\nopportunities,1\n", "no column 'column'"),
        (b"table,row,column,value,reason,details,original\nnope,1,,,x,,{}\n", "names table 'nope'"),
        (b'table,row,column,value,reason,details,original\n"opportunities,1,,,x,,{}\n', "unbalanced"),
    ],
    ids=["empty", "binary", "columns", "table", "quote"],
)
def test_an_empty_or_damaged_quarantine_csv_is_one_line_naming_the_file(tmp_path, capsys, content, said):
    folder = _folder(tmp_path, _lines(3))
    (folder / "quarantine.csv").write_bytes(content)
    err = _cli_error(["validate", str(folder)], capsys)
    assert "quarantine.csv" in err and said in err and "import the folder again" in err


def test_a_binary_table_file_is_not_a_text_file(tmp_path):
    folder = _folder(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(DataFileError, match="opportunities.csv: not a text file"):
        read_canonical(folder)


# ---------------------------------------------------------------------------------------------- 10: unclear handling
def test_a_header_naming_a_column_twice_is_refused_not_renamed(tmp_path, capsys):
    lines = _lines(3)
    lines[0] = lines[0].replace("stage", "team")  # team,...,team: pandas made the second 'team.1'
    err = _cli_error(["validate", str(_folder(tmp_path, lines))], capsys)
    assert "the header names 'team' more than once (columns 4 and 9)" in err


def _latin1_folder(tmp_path):
    lines = _lines(3)
    lines[1] = lines[1].replace("rep1", "Jürgen")
    return _folder(tmp_path, ("\n".join(lines) + "\n").encode("latin-1"))


def test_a_latin1_folder_is_told_the_option_and_reads_with_it(tmp_path, capsys):
    folder = _latin1_folder(tmp_path)
    err = _cli_error(["validate", str(folder)], capsys)
    assert "line 2" in err and "--encoding cp1252" in err
    assert main(["validate", str(folder), "--encoding", "latin-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["opportunities"]["accepted"] == 3
    assert load(folder, encoding="latin-1").opportunities["owner"].iloc[0] == "Jürgen"


def test_import_takes_the_encoding_and_writes_utf8(tmp_path, capsys):
    folder = _latin1_folder(tmp_path)
    out = tmp_path / "imported"
    assert main(["import", str(folder), "--out", str(out), "--encoding", "latin-1"]) == 0
    capsys.readouterr()
    assert load(out).opportunities["owner"].iloc[0] == "Jürgen"  # written as UTF-8, read back without the option
    mapping = tmp_path / "crm.yml"
    mapping.write_text("tables:\n  opportunities: {source: x.csv}\n", encoding="utf-8")
    err = _cli_error(["import", str(mapping), "--out", str(tmp_path / "other"), "--encoding", "latin-1"], capsys)
    assert "a mapping file names its sources' encodings" in err


def test_a_utf8_file_in_a_folder_read_as_latin1_stays_utf8(tmp_path):
    folder = _latin1_folder(tmp_path)
    (folder / "quotas.csv").write_text("owner,period,amount\nJosé,FY2024Q1,100\n", encoding="utf-8")
    data = read_canonical(folder, encoding="latin-1")
    assert data.quotas["owner"].tolist() == ["José"]
    assert data.opportunities["owner"].iloc[0] == "Jürgen"


def test_utf16_files_read_with_a_bom_and_are_named_without_one(tmp_path, capsys):
    text = "\n".join(_lines(3)).replace("rep1", "Zoë") + "\n"
    folder = _folder(tmp_path, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert read_canonical(folder).opportunities["owner"].iloc[0] == "Zoë"
    (folder / "opportunities.csv").write_bytes(text.encode("utf-16-le"))
    err = _cli_error(["validate", str(folder)], capsys)
    assert "--encoding utf-16-le" in err
    assert main(["validate", str(folder), "--encoding", "utf-16-le"]) == 0


def test_an_encoding_with_a_mapping_file_is_refused(tmp_path):
    path = tmp_path / "crm.yml"
    path.write_text("tables:\n  opportunities: deals.csv\n", encoding="utf-8")
    with pytest.raises(MappingError, match="names its sources' encodings"):
        load(path, encoding="latin-1")


def test_an_unclosed_quote_in_a_mapped_source_names_its_line(tmp_path):
    lines = _lines(2500)  # more than the csv module's field limit (131072 characters) after the quote
    lines[41] = '"' + lines[41]
    path = tmp_path / "deals.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    df = read_file_source(path)  # on main: "field larger than field limit (131072)", no line
    assert len(df) == 2500 and is_malformed(df["opportunity_id"]).sum() == 1
    data = validate({"opportunities": df})
    assert _counts(data) == [2500, 2499, 1]
    assert "a quote opened on line 42 is not closed" in data.quarantine["value"].iloc[0]


def test_a_pair_of_stray_quotes_in_a_mapped_source_merges_no_rows(tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text('Id,Owner,Amount\nD1,ann,1\n"D2,bo,2\nD3,cy,3\nD4,"di,4\nD5,ed,5\n', encoding="utf-8")
    df = read_file_source(path)  # on main: D2 to D4 read as one value 'D2,bo,2\nD3,cy,3\nD4,di'
    assert df["Id"].where(~is_malformed(df["Id"])).tolist()[:1] == ["D1"]
    assert len(df) == 5 and is_malformed(df["Id"]).tolist() == [False, True, False, True, False]
    assert df["Id"].iloc[2] == "D3" and df["Id"].iloc[4] == "D5"


def test_a_file_of_2000_columns_gives_no_performance_warning(tmp_path):
    extra = [f"f{i}" for i in range(2000)]
    lines = [line + "," + ",".join(extra if k == 0 else ["1"] * 2000) for k, line in enumerate(_lines(5))]
    folder = _folder(tmp_path, lines)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        data = read_canonical(folder)
    assert data.opportunities.shape == (5, 2009) and _counts(data) == [5, 5, 0]


# ---------------------------------------------------------------------------------------------- 8: non-ASCII digits
def test_non_ascii_digits_in_a_mapped_amount_are_quarantined_not_a_crash(tmp_path):
    (tmp_path / "deals.csv").write_text(
        "Id,Owner,Created,Stage,Amount,Close,Closed,Won\n"
        "D1,ann,2024-01-02,Prospecting,１２３,2024-03-01,false,false\n"
        "D2,bo,2024-01-03,Prospecting,٣٤,2024-03-01,false,false\n"
        "D3,cy,2024-01-04,Prospecting,50,2024-03-01,false,false\n",
        encoding="utf-8",
    )
    (tmp_path / "crm.yml").write_text(
        "tables:\n  opportunities:\n    source: deals.csv\n    columns: {opportunity_id: Id, owner: Owner,"
        " created_at: Created, stage: Stage, amount: Amount, close_date: Close, is_closed: Closed, is_won: Won}\n",
        encoding="utf-8",
    )
    data = load_mapping(tmp_path / "crm.yml")  # on main: ValueError: Unable to parse string '１２３'
    assert _counts(data) == [3, 1, 2]
    q = data.quarantine.sort_values("row")
    assert q["reason"].tolist() == ["unparseable number"] * 2
    assert q["value"].tolist() == ["１２３", "٣٤"]


def test_number_and_date_parsers_read_ascii_digits_only():
    assert parse_number(pd.Series(["１２３", "€ ١٢", "7"], dtype="str")).tolist() == ["１２３", "€ ١٢", 7.0]
    assert parse_number(pd.Series(["１.２３４"], dtype="str"), decimal=",", thousands=".").tolist() == ["１.２３４"]
    parsed = parse_dates(pd.Series(["١٢٣٤٥", "45321"], dtype="str"), excel_serial=True).tolist()
    assert parsed == ["١٢٣٤٥", pd.Timestamp("2024-01-30")]


def test_read_table_file_gives_one_row_per_line_of_a_salesforce_style_quoted_file(tmp_path):
    # every value quoted (as Salesforce writes them): the fast reader still takes one row per line
    path = tmp_path / "Opportunity.csv"
    path.write_text('"Id","Name"\n"1","a, b"\n"2","c ""d"""\n', encoding="utf-8")
    frame = read_table_file(path, "opportunities")
    assert frame.to_numpy().tolist() == [["1", "a, b"], ["2", 'c "d"']]


def test_an_export_with_a_repeated_header_numbers_it_as_before(tmp_path):
    # CRM exports (Salesforce, HubSpot) pick their columns by name: a repeated unused header is not an error there
    path = tmp_path / "deals.csv"
    path.write_text("Deal ID,Notes,Notes,Amount\nD1,a,b,10\n", encoding="utf-8")
    frame = read_table_file(path, "opportunities", duplicates="number")
    assert frame.columns.tolist() == ["Deal ID", "Notes", "Notes.1", "Amount"]
    with pytest.raises(DataFileError, match="names 'Notes' more than once"):
        read_table_file(path, "opportunities")


def test_a_stray_quote_in_a_mapped_source_header_is_refused_not_read_as_one_column(tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text('"Id,Owner,Amount\nD1,ann,1\nD2,bo,2"\nD3,cy,3\n', encoding="utf-8")
    with pytest.raises(
        DataFileError, match=r"deals.csv: the header \(line 1\) cannot be read: a quote opened on line 1"
    ):
        read_file_source(path)


def test_a_value_that_looks_like_the_malformed_mark_is_quarantined_not_a_crash(tmp_path):
    lines = _lines(3)
    lines[2] = "\x00malformed:{not json," + lines[2]
    data = read_canonical(_folder(tmp_path, lines))
    assert _counts(data) == [3, 2, 1] and data.quarantine["reason"].tolist() == ["malformed row"]


@pytest.mark.parametrize("at", [0, 1, 2])
def test_notes_with_commas_and_line_breaks_in_a_narrow_table_are_values_not_stray_quotes(tmp_path, at):
    # a narrow table (3 columns) with free text holding as many commas per line as a row has: not rows
    notes = ["Called, no answer, retry\nMonday, 9am, CFO", "budget, approved\nnext week, demo, Q3\n3 seats, 10,000"]
    rows = [[f"O{i:03d}", f"{100 + i}.0", notes[i % 2]] for i in range(40)]
    frame = pd.DataFrame([r[:at] + [r[2]] + r[at:2] for r in rows])
    frame.columns = [["id", "amount"][:at] + ["note"] + ["id", "amount"][at:]][0]
    path = tmp_path / "notes.csv"
    frame.to_csv(path, index=False)
    read = read_table_file(path, "x")
    assert len(read) == 40 and not is_malformed(read.iloc[:, 0]).any()
    assert read["note"].tolist() == frame["note"].tolist()


def test_snapshot_takes_the_encoding_too(tmp_path, capsys):
    folder = _latin1_folder(tmp_path)
    store = tmp_path / "store"
    assert main(["snapshot", str(folder), "--store", str(store), "--as-of", "2024-02-01"]) == 2
    assert "--encoding cp1252" in capsys.readouterr().err
    assert main(["snapshot", str(folder), "--store", str(store), "--as-of", "2024-02-01", "--encoding", "latin-1"]) == 0
