"""Reading messy tabular sources (salesforecast.io.sources) and the value parsers of mapped imports."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesforecast.io.sources import (
    MissingColumnsError,
    is_malformed,
    map_values,
    parse_dates,
    parse_number,
    read_file_source,
    source_format,
)
from salesforecast.schema import DataFileError, validate


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------------------------- encodings
def test_utf8_bom_is_stripped_from_the_first_header(tmp_path):
    path = write(tmp_path / "d.csv", "\ufeffDeal ID,Owner\nD1,Zoë\n")
    df = read_file_source(path, columns=["Deal ID", "Owner"])
    assert df.columns.tolist() == ["Deal ID", "Owner"]
    assert df["Owner"].tolist() == ["Zoë"]


def test_bom_is_stripped_whatever_the_encoding_says(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfDeal ID,Owner\nD1,ann\n")
    assert read_file_source(path, encoding="latin-1").columns.tolist() == ["Deal ID", "Owner"]


def test_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes("Deal\tOwner\nD1\tJürgen\n".encode("utf-16"))
    assert read_file_source(path)["Owner"].tolist() == ["Jürgen"]


def test_latin1_file(tmp_path):
    path = write(tmp_path / "d.csv", "Kunde;Besitzer\nBäckerei Schäfer;Jürgen\n", "latin-1")
    df = read_file_source(path, encoding="latin-1")
    assert df["Kunde"].tolist() == ["Bäckerei Schäfer"]


def test_undecodable_bytes_name_file_offset_line_and_the_encoding_to_set(tmp_path):
    path = write(tmp_path / "d.csv", "Kunde;Besitzer\nBäckerei;x\n", "latin-1")
    with pytest.raises(DataFileError) as err:
        read_file_source(path)
    msg = str(err.value)
    assert str(path) in msg and "offset 16" in msg and "line 2" in msg
    assert "encoding: cp1252" in msg
    assert err.value.file == str(path)


def test_utf8_file_read_as_latin1_is_refused_not_turned_into_mojibake(tmp_path):
    path = write(tmp_path / "d.csv", "Kunde\nBäckerei\n")
    with pytest.raises(DataFileError, match="encoding: utf-8") as err:
        read_file_source(path, encoding="latin-1")
    assert "Ã¤" in str(err.value)


def test_unknown_encoding(tmp_path):
    path = write(tmp_path / "d.csv", "a\n1\n")
    with pytest.raises(DataFileError, match="unknown encoding 'klingon'"):
        read_file_source(path, encoding="klingon")


# ---------------------------------------------------------------------------------------------- delimiters
@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, sep):
    text = sep.join(["Deal", "Wert", "Phase"]) + "\n" + sep.join(["D1", "1,5" if sep != "," else "1.5", "Won"]) + "\n"
    df = read_file_source(write(tmp_path / "d.csv", text))
    assert df.columns.tolist() == ["Deal", "Wert", "Phase"]
    assert df["Phase"].tolist() == ["Won"]


def test_semicolon_file_with_decimal_commas_sniffs_semicolon(tmp_path):
    text = "Deal;Wert;Phase\nD1;1.234,50;Won\nD2;99,00;Lost\n"
    df = read_file_source(write(tmp_path / "d.csv", text))
    assert df["Wert"].tolist() == ["1.234,50", "99,00"]


def test_explicit_delimiter_by_name(tmp_path):
    df = read_file_source(write(tmp_path / "d.txt", "a;b\n1;2\n"), delimiter="semicolon")
    assert df.columns.tolist() == ["a", "b"]
    with pytest.raises(DataFileError, match="one character"):
        read_file_source(tmp_path / "d.txt", delimiter=";;")


def test_gzipped_csv(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read_file_source(path)["b"].tolist() == ["2"]


# ---------------------------------------------------------------------------------------------- structure
def test_quoted_newlines_stay_in_their_value(tmp_path):
    text = 'Deal;Notes;Wert\r\nD1;"first line\r\nsecond; line";10\r\nD2;plain;20\r\n'
    df = read_file_source(write(tmp_path / "d.csv", text))
    assert len(df) == 2
    assert df["Notes"].iloc[0] == "first line\r\nsecond; line"
    assert df["Wert"].tolist() == ["10", "20"]


def test_trailing_empty_columns_are_dropped_but_an_unnamed_column_with_values_is_kept(tmp_path):
    text = "a;b;;;\n1;2;;;\n3;4;;x;\n"
    df = read_file_source(write(tmp_path / "d.csv", text))
    assert df.columns.tolist() == ["a", "b", "column 4"]
    assert df["column 4"].isna().tolist() == [True, False]


def test_trailing_delimiters_beyond_the_header_are_not_malformed(tmp_path):
    df = read_file_source(write(tmp_path / "d.csv", "a;b\n1;2;;\n3;4\n"))
    assert df.to_dict("list") == {"a": ["1", "3"], "b": ["2", "4"]}
    assert not is_malformed(df["a"]).any()


def test_short_lines_are_padded_and_blank_lines_are_empty_rows(tmp_path):
    df = read_file_source(write(tmp_path / "d.csv", "a,b,c\n1,2\n\n4,5,6\n\n\n"))
    assert len(df) == 3  # trailing blank lines are not rows; the one in the middle is
    assert df.iloc[0].isna().tolist() == [False, False, True]
    assert df.iloc[1].isna().all()


def test_a_line_with_an_extra_value_is_marked_malformed_and_validate_quarantines_it(tmp_path):
    text = (
        "Deal,Owner,Created,Stage,Amount,Close,Closed,Won\n"
        "D1,ann,2024-01-02,Prospecting,100,2024-03-01,0,0\n"
        "D2,bo,2024-01-03,Prospecting,1,000,2024-03-01,0,0\n"
    )
    df = read_file_source(write(tmp_path / "d.csv", text), columns=["Owner", "Deal"])
    assert is_malformed(df["Owner"]).tolist() == [False, True]
    assert df["Deal"].isna().tolist() == [False, True]
    names = dict(
        zip(
            ["opportunity_id", "owner", "created_at", "stage", "amount", "close_date", "is_closed", "is_won"],
            ["Deal", "Owner", "Created", "Stage", "Amount", "Close", "Closed", "Won"],
            strict=True,
        )
    )
    raw = read_file_source(tmp_path / "d.csv", columns=list(names.values()))
    data = validate({"opportunities": raw.set_axis(list(names), axis=1)})
    assert data.counts.loc["opportunities"].tolist() == [2, 1, 1]
    assert data.quarantine["reason"].tolist() == ["malformed row"]
    assert "1,000" not in data.quarantine["original"].iloc[0]  # its fields are listed one by one
    assert '"1"' in data.quarantine["original"].iloc[0]


def test_unclosed_quote_names_the_line(tmp_path):
    path = write(tmp_path / "d.csv", 'a,b\n1,2\n3,"open\n5,6\n')
    df = read_file_source(path)  # the line is set aside (quarantined by validate), the next one is a row
    assert is_malformed(df["a"]).tolist() == [False, True, False]
    assert "line 3 is never closed" in df["a"].iloc[1] and df["a"].iloc[2] == "5"


def test_skip_rows_skips_a_title_above_the_header(tmp_path):
    text = "Opportunity report, exported 2024-05-01\n\nDeal,Owner\nD1,ann\n"
    df = read_file_source(write(tmp_path / "d.csv", text), skip_rows=1)
    assert df.columns.tolist() == ["Deal", "Owner"]
    with pytest.raises(DataFileError, match="skip_rows is 9"):
        read_file_source(tmp_path / "d.csv", skip_rows=9)


def test_empty_file(tmp_path):
    with pytest.raises(DataFileError, match="empty"):
        read_file_source(write(tmp_path / "d.csv", "\ufeff\n\n"))


def test_values_are_text_and_only_empty_fields_are_missing(tmp_path):
    df = read_file_source(write(tmp_path / "d.csv", "a,b,c\nNA,,007\n"))
    assert df.dtypes.tolist() == ["str", "str", "str"]
    assert df.iloc[0].tolist()[0] == "NA" and df.iloc[0].tolist()[2] == "007"
    assert pd.isna(df["b"].iloc[0])


def test_missing_tokens(tmp_path):
    df = read_file_source(write(tmp_path / "d.csv", "a,b\n-,n/a\nx, - \n"), missing=["-", "n/a"])
    assert df.isna().to_numpy().tolist() == [[True, True], [False, True]]


# ---------------------------------------------------------------------------------------------- headers
def test_columns_selects_renames_in_order_and_matches_case_insensitively(tmp_path):
    df = read_file_source(write(tmp_path / "d.csv", " Deal  ID ,Owner,Extra\nD1,ann,x\n"), columns=["owner", "Deal ID"])
    assert df.columns.tolist() == ["owner", "Deal ID"]
    assert df.iloc[0].tolist() == ["ann", "D1"]


def test_missing_columns_are_named_with_the_available_ones(tmp_path):
    path = write(tmp_path / "d.csv", "Deal ID,Owner,Value (EUR)\nD1,ann,1\n")
    with pytest.raises(MissingColumnsError) as err:
        read_file_source(path, columns=["Deal ID", "Value", "Phase"])
    assert err.value.missing == ["Value", "Phase"]
    assert err.value.available == ["Deal ID", "Owner", "Value (EUR)"]
    msg = str(err.value)
    assert "'Value'" in msg and "'Phase'" in msg and "'Value (EUR)'" in msg


def test_a_duplicated_header_is_an_error_when_it_is_requested(tmp_path):
    path = write(tmp_path / "d.csv", "Deal,Owner,Notes,Owner\nD1,ann,x,bo\n")
    with pytest.raises(DataFileError, match=r"names 'Owner' more than once \(columns 2 and 4\)") as err:
        read_file_source(path, columns=["Deal", "Owner"])
    assert err.value.column == "Owner"
    with pytest.raises(DataFileError, match="'Owner' more than once"):
        read_file_source(path)  # reading every column needs unique names


def test_a_duplicated_header_that_is_not_requested_is_ignored(tmp_path):
    path = write(tmp_path / "d.csv", "Deal,Notes,Owner,Notes\nD1,x,ann,y\n")
    assert read_file_source(path, columns=["Deal", "Owner"]).iloc[0].tolist() == ["D1", "ann"]


# ---------------------------------------------------------------------------------------------- other formats
def test_excel_source_keeps_types_and_reads_the_named_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame({"x": [1]}).to_excel(xl, sheet_name="Cover", index=False)
        pd.DataFrame(
            {
                "User ID": [101, 102, None],
                "Name": ["Jürgen", "Anna", "Bo"],
                "Since": pd.to_datetime(["2024-01-30", "2023-05-01", None]),
                "Mixed": [1, "A-7", 2.5],
            }
        ).to_excel(xl, sheet_name="Owners", index=False, startrow=2)
    df = read_file_source(path, sheet="Owners", skip_rows=2)
    assert df.columns.tolist() == ["User ID", "Name", "Since", "Mixed"]
    assert df["User ID"].astype("str").tolist()[:2] == ["101", "102"]  # whole numbers stay whole
    assert df["Since"].dtype == "datetime64[us]"
    assert df["Mixed"].tolist() == ["1", "A-7", "2.5"]
    with pytest.raises(DataFileError, match=r"no sheet 'Targets'; sheets are \['Cover', 'Owners'\]"):
        read_file_source(path, sheet="Targets")


def test_excel_leading_and_trailing_empty_rows_are_not_data(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append([None, None])
    ws.append(["a", "b"])
    ws.append([1, "x"])
    ws.append([None, None])
    ws.append([2, "y"])
    ws.cell(row=9, column=1).number_format = "0.00"  # a formatted but empty cell far below
    ws.cell(row=9, column=1).value = None
    wb.save(tmp_path / "b.xlsx")
    df = read_file_source(tmp_path / "b.xlsx")
    assert df.columns.tolist() == ["a", "b"]
    assert len(df) == 3  # the empty row between is a row; nothing after the last value is


def test_parquet_source(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"Deal": ["D1"], "Value": [1.5], "Created": pd.to_datetime(["2024-01-02"])}).to_parquet(path)
    df = read_file_source(path, columns=["Created", "Value"])
    assert df.columns.tolist() == ["Created", "Value"]
    assert df["Value"].dtype == "float64"
    with pytest.raises(MissingColumnsError, match="'Stage'"):
        read_file_source(path, columns=["Stage"])


def test_format_from_suffix_and_errors(tmp_path):
    assert source_format("a.TSV") == "csv" and source_format("a.xls") == "excel" and source_format("a.pq") == "parquet"
    with pytest.raises(DataFileError, match="cannot tell the format"):
        source_format("deals.dat")
    with pytest.raises(DataFileError, match="unknown format"):
        source_format("deals.dat", "json")
    with pytest.raises(DataFileError, match="no such file"):
        read_file_source(tmp_path / "nope.csv")
    write(tmp_path / "bad.parquet", "not parquet")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        read_file_source(tmp_path / "bad.parquet")


# ---------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("text", "decimal", "thousands", "expected"),
    [
        ("1.234,50", ",", ".", 1234.5),
        ("1.234.567", ",", ".", 1234567.0),
        ("12,5", ",", ".", 12.5),
        ("€ 1.234,50", ",", ".", 1234.5),
        ("1.234,50 €", ",", ".", 1234.5),
        ("1.234,50 EUR", ",", ".", 1234.5),
        ("-1.234,50", ",", ".", -1234.5),
        ("(1.234,50)", ",", ".", -1234.5),
        ("1.234,50-", ",", ".", -1234.5),
        ("12,5 %", ",", None, 12.5),
        ("1,234.50", ".", ",", 1234.5),
        ("$1,234", ".", ",", 1234.0),
        ("1 234,5", ",", " ", 1234.5),
        ("1\u202f234,5", ",", " ", 1234.5),
        ("1'234.50", ".", "'", 1234.5),
        ("CHF 1’234.50", ".", "'", 1234.5),
        (".5", ".", None, 0.5),
        ("1e3", ".", None, 1000.0),
        ("  42  ", ".", None, 42.0),
    ],
)
def test_parse_number_formats(text, decimal, thousands, expected):
    out = parse_number(pd.Series([text]), decimal=decimal, thousands=thousands)
    assert out.dtype == "float64"
    assert out.iloc[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "decimal", "thousands"),
    [
        ("1.5", ",", "."),  # a dot that is not a thousands group: never silently 15
        ("1.2345", ",", "."),
        ("1.234,50", ",", None),  # thousands separators not declared
        ("1,234.50", ",", "."),  # the other convention
        ("k. A.", ",", "."),
        ("--5", ".", None),
        ("12 Stück", ",", None),
    ],
)
def test_parse_number_keeps_what_it_cannot_read_as_text(text, decimal, thousands):
    out = parse_number(pd.Series([text, "1"]), decimal=decimal, thousands=thousands)
    assert out.tolist() == [text, 1.0]


def test_parse_number_passes_numbers_and_missing_through():
    assert parse_number(pd.Series([1, 2])).dtype == "float64"
    assert parse_number(pd.Series(["1", None, " "])).isna().tolist() == [False, True, True]
    with pytest.raises(ValueError, match="both"):
        parse_number(pd.Series(["1"]), decimal=",", thousands=",")


def test_unparseable_number_is_quarantined_with_its_text():
    raw = _opportunities(amount=parse_number(pd.Series(["1.234,50", "k. A."]), decimal=",", thousands="."))
    data = validate({"opportunities": raw})
    assert data.counts.loc["opportunities"].tolist() == [2, 1, 1]
    q = data.quarantine.iloc[0]
    assert (q["column"], q["value"], q["reason"]) == ("amount", "k. A.", "unparseable number")
    assert data.opportunities["amount"].tolist() == [1234.5]


def _opportunities(**columns: pd.Series) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "opportunity_id": [f"O{i}" for i in range(n)],
        "owner": ["ann"] * n,
        "created_at": ["2024-01-02"] * n,
        "stage": ["Prospecting"] * n,
        "amount": ["1"] * n,
        "close_date": ["2024-03-01"] * n,
        "is_closed": ["0"] * n,
        "is_won": ["0"] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


# ---------------------------------------------------------------------------------------------- dates
def test_several_date_formats_in_one_column():
    s = pd.Series(["30.01.2024", "31.01.2024 14:05", "2024-02-01T08:00:00", "01.02.24", None])
    out = parse_dates(s, ["%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%y"])
    assert out.dtype == "datetime64[us]"
    assert out.dt.strftime("%Y-%m-%d %H:%M").tolist()[:4] == [
        "2024-01-30 00:00",
        "2024-01-31 14:05",
        "2024-02-01 08:00",
        "2024-02-01 00:00",
    ]
    assert pd.isna(out.iloc[4])


def test_dates_that_fail_stay_text_and_are_quarantined():
    dates = parse_dates(pd.Series(["30.01.2024", "31.02.2024", "bald"]), ["%d.%m.%Y"])
    assert dates.tolist()[1:] == ["31.02.2024", "bald"]
    data = validate({"opportunities": _opportunities(created_at=dates)})
    assert data.counts.loc["opportunities"].tolist() == [3, 1, 2]
    assert data.quarantine["reason"].tolist() == ["unparseable date"] * 2
    assert data.quarantine["value"].tolist() == ["31.02.2024", "bald"]


def test_excel_serial_dates():
    numbers = parse_dates(pd.Series([45321, 45321.75, np.nan]), excel_serial=True)
    assert numbers.dt.strftime("%Y-%m-%d %H:%M").tolist()[:2] == ["2024-01-30 00:00", "2024-01-30 18:00"]
    texts = parse_dates(pd.Series(["45321", "30.01.2024", "2024"]), ["%d.%m.%Y"], excel_serial=True)
    assert texts.tolist()[:2] == [pd.Timestamp("2024-01-30"), pd.Timestamp("2024-01-30")]
    assert texts.iloc[2] == "2024"  # not a plausible serial: stays text
    assert parse_dates(pd.Series([45321])).tolist() == [45321]  # numbers are no dates unless declared
    assert parse_dates(pd.Series([5.0]), excel_serial=True).tolist() == [5.0]


def test_dates_without_formats_are_iso_or_day_or_month_first_as_declared():
    s = pd.Series(["03/04/2024", "2024-04-05", "1/30/2024 2:05 PM"])
    us = parse_dates(s)
    assert us.iloc[0] == pd.Timestamp("2024-03-04") and us.iloc[2] == pd.Timestamp("2024-01-30 14:05")
    eu = parse_dates(pd.Series(["03/04/2024", "30.01.2024 14:05"]), dayfirst=True)
    assert eu.tolist() == [pd.Timestamp("2024-04-03"), pd.Timestamp("2024-01-30 14:05")]
    assert parse_dates(pd.Series(["30/01/2024"])).tolist() == ["30/01/2024"]  # never guessed per value


def test_dates_with_offsets_become_naive_utc_and_typed_dates_pass():
    out = parse_dates(pd.Series(["2024-01-30T10:00:00+02:00", "30.01.2024 10:00 +0100"]), ["%d.%m.%Y %H:%M %z"])
    assert out.tolist() == [pd.Timestamp("2024-01-30 08:00"), pd.Timestamp("2024-01-30 09:00")]
    typed = pd.Series(pd.to_datetime(["2024-01-30 10:00"]).tz_localize("Europe/Berlin"))
    assert parse_dates(typed).tolist() == [pd.Timestamp("2024-01-30 09:00")]


# ---------------------------------------------------------------------------------------------- value maps
def test_map_values_is_case_insensitive_and_passes_other_values():
    out = map_values(
        pd.Series([" gewonnen", "VERLOREN", "Angebot", None]), {"Gewonnen": "Closed Won", "Verloren": "Closed Lost"}
    )
    assert out.tolist()[:3] == ["Closed Won", "Closed Lost", "Angebot"]
    assert out.dtype == "str"


def test_booleans_via_value_maps_reach_validate():
    flags = map_values(pd.Series(["ja", "nein", "vielleicht"]), {"ja": True, "nein": False})
    raw = _opportunities(is_closed=flags, is_won=pd.Series(["0", "0", "0"]))
    raw["stage"] = ["Closed Lost", "Prospecting", "Prospecting"]
    data = validate({"opportunities": raw})
    assert data.opportunities["is_closed"].tolist() == [True, False]
    assert data.quarantine["reason"].tolist() == ["unparseable boolean"]


def test_map_values_matches_spreadsheet_numbers_and_maps_to_missing():
    assert map_values(pd.Series([1.0, 0.0, 2.0]), {1: "yes", 0: "no"}).tolist() == ["yes", "no", 2.0]
    assert map_values(pd.Series(["-", "x"]), {"-": None}).isna().tolist() == [True, False]
