"""CSV files people open in a spreadsheet run no formula; the suite still reads back what it wrote.

``quarantine.csv`` (written by `CRMData.to_folder` and by `import_mapping`) holds the rejected values as they came:
``=cmd|' /C calc'!A0``, ``+SUM(...)``, ``@SUM(1+1)``. It is written with OWASP's rule (a text cell starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``; plain numbers such as ``-5`` do not),
and reading the folder back removes exactly that ``'``, so the quarantine comes back with the original values.
The canonical tables are data the suite reads back, not files meant for spreadsheets: they keep values as they are.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesforecast._utils import (
    FORMULA_START,
    spreadsheet_cell,
    spreadsheet_csv,
    spreadsheet_safe,
    unescape_cell,
    unescape_spreadsheet,
)
from salesforecast.io import import_mapping
from salesforecast.schema import read_canonical

PAYLOADS = ["=cmd|' /C calc'!A0", "+SUM(1+1)", "@SUM(1+1)", "-2+3+cmd|' /C calc'!A0", '=HYPERLINK("http://x")']


def _cells(path: Path) -> list[dict[str, str]]:
    """The cells of a CSV file as a spreadsheet would get them (text, no interpretation)."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _unsafe(cell: str) -> bool:
    """Whether a spreadsheet would read this cell as a formula (a plain number such as -5 is a number)."""
    number = re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cell)
    return cell[:1] != "" and cell[0] in FORMULA_START and number is None


# ------------------------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1:A3)", "'+SUM(A1:A3)"),
        ("-2+3", "'-2+3"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("'=1+1", "''=1+1"),  # a quote already there: one more, so that reading back is exact
        ("-5", "-5"),  # plain numbers are numbers to a spreadsheet
        ("+1.5e3", "+1.5e3"),
        ("-inf", "'-inf"),
        ("ann", "ann"),
        ("'ann", "'ann"),
        ("", ""),
        ('{"amount": "=1+1"}', '{"amount": "=1+1"}'),  # not at the start: text
    ],
)
def test_formula_starts_are_escaped_and_read_back_exactly(value, written):
    assert spreadsheet_cell(value) == written
    assert unescape_cell(written) == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("=+-@\t\r'a1. "), max_size=6) | st.text(max_size=12))
def test_any_text_round_trips_and_is_never_a_formula(value):
    written = spreadsheet_cell(value)
    assert unescape_cell(written) == value
    assert not _unsafe(written)


def test_numeric_columns_are_left_alone_and_a_file_round_trips(tmp_path):
    df = pd.DataFrame(
        {
            "amount": [-5.0, 2.5, -1.0],
            "row": [3, -4, 7],
            "value": ["-5", "=1+1", None],
            "note": pd.Series(["@x", "'=y", "plain"], dtype="str"),
        }
    )
    safe = spreadsheet_safe(df)
    assert safe["amount"].tolist() == [-5.0, 2.5, -1.0] and safe["row"].tolist() == [3, -4, 7]
    assert safe["value"].tolist()[:2] == ["-5", "'=1+1"] and pd.isna(safe["value"].iloc[2])
    assert safe["note"].tolist() == ["'@x", "''=y", "plain"] and safe["note"].dtype == df["note"].dtype
    path = tmp_path / "t.csv"
    spreadsheet_csv(df, path)
    assert path.read_bytes().count(b"\r\n") == 0
    cells = _cells(path)
    assert [c["amount"] for c in cells] == ["-5.0", "2.5", "-1.0"]  # a negative number is not prefixed
    assert not any(_unsafe(v) for c in cells for v in c.values())
    back = unescape_spreadsheet(pd.read_csv(path, dtype="str", keep_default_na=False))
    assert back["value"].tolist() == ["-5", "=1+1", ""] and back["note"].tolist() == ["@x", "'=y", "plain"]


# ------------------------------------------------------------------------------------------- quarantine.csv
OPPORTUNITIES = (
    "opportunity_id,owner,created_at,stage,amount,close_date,is_closed,is_won\n"
    + "".join(
        f'O{i},ann,2024-01-0{i + 1},Prospecting,"{p.replace(chr(34), chr(34) * 2)}",2024-03-31,false,false\n'
        for i, p in enumerate(PAYLOADS)
    )
    + 'O8,=HYPERLINK("http://x"),2024-01-09,Prospecting,-5,2024-03-31,false,false\n'
    + ("O9,@bo,2024-01-09,Prospecting,100,2024-03-31,false,false\n")
)


def _check_quarantine_file(folder: Path, values: list[str]) -> None:
    cells = _cells(folder / "quarantine.csv")
    assert not any(_unsafe(v) for c in cells for v in c.values()), cells
    written = {c["value"] for c in cells}
    assert {"'" + p for p in PAYLOADS} <= written  # every payload escaped ...
    assert written & {"-5", "-5.0"}  # ... and the negative amount written as the number it is
    back = read_canonical(folder)
    imported = back.quarantine[back.quarantine["details"].str.endswith("(quarantined at import)")]
    assert sorted(imported["value"]) == sorted(values)  # read back: the values as they came


def test_to_folder_writes_an_escaped_quarantine_that_reads_back_as_it_was(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "opportunities.csv").write_text(OPPORTUNITIES, encoding="utf-8")
    data = read_canonical(src)
    values = data.quarantine["value"].tolist()
    assert set(PAYLOADS) | {"-5"} <= set(values)
    out = data.to_folder(tmp_path / "out")
    _check_quarantine_file(out, values)
    # the canonical tables are data, not spreadsheets: an accepted owner keeps its text as it is, both ways
    assert (out / "opportunities.csv").read_text(encoding="utf-8").count(",@bo,") == 1
    assert read_canonical(out).opportunities["owner"].tolist() == data.opportunities["owner"].tolist()


MAPPING = """\
tables:
  opportunities:
    source: deals.csv
    columns: {opportunity_id: id, owner: owner, created_at: created, stage: stage, amount: amount,
              close_date: close, is_closed: closed, is_won: won}
"""


def test_import_mapping_writes_an_escaped_quarantine_that_reads_back_as_it_was(tmp_path):
    header = "id,owner,created,stage,amount,close,closed,won\n"
    (tmp_path / "deals.csv").write_text(header + OPPORTUNITIES.split("\n", 1)[1], encoding="utf-8")
    (tmp_path / "crm.yml").write_text(MAPPING, encoding="utf-8")
    data = import_mapping(tmp_path / "crm.yml", tmp_path / "out")
    values = data.quarantine["value"].tolist()
    assert set(PAYLOADS) <= set(values) and "-5.0" in values
    _check_quarantine_file(tmp_path / "out", values)
