import numpy as np
import pandas as pd
import pytest

from salesforecast.process import FiscalCalendar, ProcessError, SalesProcess, fiscal_period


def test_default_mirrors_salesforce():
    p = SalesProcess.default()
    expected = {
        "Prospecting": 0.10,
        "Qualification": 0.10,
        "Needs Analysis": 0.20,
        "Value Proposition": 0.50,
        "Id. Decision Makers": 0.60,
        "Perception Analysis": 0.70,
        "Proposal/Price Quote": 0.75,
        "Negotiation/Review": 0.90,
        "Closed Won": 1.0,
        "Closed Lost": 0.0,
    }
    assert p.probability.to_dict() == expected
    assert p.open_stages == list(expected)[:8]
    assert p.won_stages == ["Closed Won"] and p.lost_stages == ["Closed Lost"]
    assert p.forecast_category["Closed Won"] == "closed"
    assert p.forecast_category["Closed Lost"] == "omitted"
    assert set(p.forecast_category[p.open_stages]) == {"pipeline"}


@pytest.mark.parametrize("name", ["closed won", "  CLOSED\tWON ", "Won", "won"])
def test_aliases_case_and_whitespace_insensitive(name):
    assert SalesProcess.default().canonical_stage(name) == "Closed Won"


def test_unknown_stage_is_none():
    p = SalesProcess.default()
    assert p.canonical_stage("Discovery") is None
    assert p.canonical_stage(None) is None


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text(
        """
name: Acme
fiscal_year_start_month: 2
stages:
  - {name: Discovery, probability: 0.1, aliases: [Disco]}
  - {name: Demo, probability: 0.3, max_days: 30}
  - {name: Negotiation, probability: 0.8, forecast_category: Commit}
  - {name: Won, kind: won}
  - {name: Lost, kind: lost, aliases: ["Closed Lost", "No decision"]}
"""
    )
    p = SalesProcess.from_yaml(path)
    assert p.open_stages == ["Discovery", "Demo", "Negotiation"]
    assert p.canonical_stage("disco") == "Discovery"
    assert p.canonical_stage("no  DECISION") == "Lost"
    assert p.stage("Demo").max_days == 30
    assert p.forecast_category["Negotiation"] == "commit"
    assert p.calendar.start_month == 2
    again = SalesProcess.from_yaml(p.to_yaml(tmp_path / "again.yml"))
    assert again == p


@pytest.mark.parametrize(
    "body, key",
    [
        ("stages: []", "stages"),
        ("stages: [{name: A, probability: 10}, {name: W, kind: won}, {name: L, kind: lost}]", "probability"),
        ("stages: [{name: A}, {name: L, kind: lost}]", "won"),
        (
            "stages: [{name: A}, {name: W, kind: won}, {name: L, kind: lost}]\nfiscal_year_start_month: 13",
            "fiscal_year_start_month",
        ),
        ("stages: [{name: A, colour: red}, {name: W, kind: won}, {name: L, kind: lost}]", "colour"),
        ("stages: [{name: A, aliases: [W]}, {name: W, kind: won}, {name: L, kind: lost}]", "aliases"),
        ("stages: [{name: W, kind: won}, {name: A}, {name: L, kind: lost}]", "open stages first"),
        (
            "stages: [{name: A, forecast_category: maybe}, {name: W, kind: won}, {name: L, kind: lost}]",
            "forecast_category",
        ),
    ],
)
def test_bad_yaml_names_the_key(tmp_path, body, key):
    path = tmp_path / "bad.yml"
    path.write_text(body)
    with pytest.raises(ProcessError, match=key) as exc:
        SalesProcess.from_yaml(path)
    assert str(path) in str(exc.value)


def _naive_quarter(ts: pd.Timestamp, start_month: int, naming: str) -> str:
    # walk back to the start of the fiscal year containing ts
    year = ts.year if ts.month >= start_month else ts.year - 1
    months_in = (ts.month - start_month) % 12
    fy = year + 1 if (naming == "end" and start_month != 1) else year
    return f"FY{fy}Q{months_in // 3 + 1}"


@pytest.mark.parametrize("start_month", range(1, 13))
@pytest.mark.parametrize("naming", ["end", "start"])
def test_fiscal_quarters_every_start_month(start_month, naming):
    dates = pd.Series(pd.date_range("2022-11-15", "2025-02-15", freq="7D"))
    got = fiscal_period(dates, "quarter", start_month=start_month, naming=naming)
    want = [_naive_quarter(d, start_month, naming) for d in dates]
    assert got.tolist() == want
    cal = FiscalCalendar(start_month, naming)
    # every date lies inside the bounds of its own label, across year boundaries
    for d, label in zip(dates, got, strict=True):
        lo, hi = cal.period_bounds(label)
        assert lo <= d < hi
    years = cal.period(dates, "year")
    assert all(q.startswith(y) for q, y in zip(got, years, strict=True))


def test_fiscal_year_boundaries():
    cal = FiscalCalendar(start_month=7)  # FY2025 = July 2024 .. June 2025
    s = pd.Series(
        pd.to_datetime(["2024-06-30 23:59:59", "2024-07-01 00:00:00", "2025-06-30 00:00:00", "2025-07-01 00:00:00"])
    )
    assert cal.period(s, "quarter").tolist() == ["FY2024Q4", "FY2025Q1", "FY2025Q4", "FY2026Q1"]
    assert cal.period(s, "year").tolist() == ["FY2024", "FY2025", "FY2025", "FY2026"]
    assert cal.period(s, "month").tolist() == ["2024-06", "2024-07", "2025-06", "2025-07"]
    assert FiscalCalendar(7, "start").period(s, "year").tolist() == ["FY2023", "FY2024", "FY2024", "FY2025"]
    assert cal.period_bounds("FY2025") == (pd.Timestamp("2024-07-01"), pd.Timestamp("2025-07-01"))
    assert cal.period_bounds("2025-02") == (pd.Timestamp("2025-02-01"), pd.Timestamp("2025-03-01"))


def test_period_missing_dates_and_bad_labels():
    cal = FiscalCalendar()
    out = cal.period(pd.Series([pd.Timestamp("2024-01-01"), pd.NaT]), "quarter")
    assert out.iloc[0] == "FY2024Q1" and pd.isna(out.iloc[1])
    assert not cal.is_period("2024Q1")
    with pytest.raises(ValueError, match="2024Q1"):
        cal.period_bounds("2024Q1")
    assert cal.periods_between("2024-02-10", "2024-08-01") == ["FY2024Q1", "FY2024Q2", "FY2024Q3"]


def test_fiscal_parts_vectorised_matches_labels():
    cal = FiscalCalendar(start_month=10)
    dates = pd.Series(pd.date_range("2023-01-01", periods=24, freq="MS"))
    q = cal.fiscal_quarter(dates)
    labels = cal.period(dates, "quarter")
    assert np.array_equal(q, labels.str[-1].astype(int).to_numpy())


def test_readme_process_example_loads(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## The sales process map.*?```yaml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "acme.yml"
    path.write_text(block)
    p = SalesProcess.from_yaml(path)
    assert p.open_stages == ["Discovery", "Demo", "Proposal", "Negotiation"]
    assert p.canonical_stage("prospecting") == "Discovery"
    assert p.calendar.period_bounds("FY2025")[0] == pd.Timestamp("2024-02-01")
    bad = tmp_path / "bad.yml"
    bad.write_text(block.replace("probability: 0.30", "probability: 30"))
    msg = re.search(r"is reported with its key \(`(.*?)`\)", readme, re.S).group(1).replace("\n", " ")
    with pytest.raises(ProcessError) as exc:
        SalesProcess.from_yaml(bad)
    assert msg in str(exc.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # key path with the stage's name, the value given and what is allowed, a "did you mean"
        (
            "stages: [{name: A, kind: opn}, {name: W, kind: won}, {name: L, kind: lost}]",
            "stages[0] ('A').kind: must be 'open', 'won' or 'lost', got 'opn' (did you mean 'open'?)",
        ),
        (
            "stags: [{name: A}]",
            "unknown key(s) ['stags'] (did you mean 'stages'?); allowed: ['activity_types', 'currency',",
        ),
        (
            "stages: [{name: A, probabilty: 0.2}, {name: W, kind: won}, {name: L, kind: lost}]",
            "stages[0] ('A'): unknown key(s) ['probabilty'] (did you mean 'probability'?)",
        ),
        (
            "stages: [A, {name: W, kind: won}, {name: L, kind: lost}]\nfiscal_year_naming: begin",
            "fiscal_year_naming: must be 'end' or 'start', got 'begin'",
        ),
        (
            "stages: [{name: A, aliases: {x: 1}}, {name: W, kind: won}, {name: L, kind: lost}]",
            "stages[0] ('A').aliases: must be a list of names, got {'x': 1}",
        ),
        ("stages: [{name: A}, [W], {name: L, kind: lost}]", "stages[1]: must be a mapping, got ['W'] (list)"),
        ("stages: [{kind: won}]", "stages[0].name: missing"),
        ("- A\n- B\n", "must be a mapping, got ['A', 'B'] (list)"),
    ],
)
def test_schema_messages_name_the_key_path_the_value_and_a_close_word(tmp_path, body, message):
    path = tmp_path / "bad.yml"
    path.write_text(body)
    with pytest.raises(ProcessError) as exc:
        SalesProcess.from_yaml(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)


def test_unreadable_process_files_are_named(tmp_path):
    with pytest.raises(ProcessError, match="nope.yml: process file not found"):
        SalesProcess.from_yaml(tmp_path / "nope.yml")
    (tmp_path / "latin.yml").write_bytes("name: Bestätigt\n".encode("latin-1"))
    with pytest.raises(ProcessError, match=r"latin.yml: bytes at offset \d+ are not UTF-8"):
        SalesProcess.from_yaml(tmp_path / "latin.yml")


def test_process_json_schema_describes_the_file():
    from salesforecast.process import ProcessFile

    schema = ProcessFile.model_json_schema()
    assert schema["required"] == ["stages"] and schema["additionalProperties"] is False
    stage = schema["$defs"]["StageEntry"]
    assert stage["properties"]["kind"]["enum"] == ["open", "won", "lost"]
    assert stage["properties"]["probability"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 1}
