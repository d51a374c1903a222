import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from salesforecast.cli import main
from tests.factories import as_text, random_crm


def _folder(tmp_path, corrupt: bool):
    t = {k: as_text(v) for k, v in random_crm(20, seed=5).items()}
    if corrupt:
        t["opportunities"].loc[0, "amount"] = "-3"
        t["opportunities"].loc[1, "stage"] = "Nowhere"
        t["opportunities"].loc[2, "created_at"] = "soon"
        t["stage_history"].loc[0, "opportunity_id"] = "GHOST"
    folder = tmp_path / "crm"
    folder.mkdir()
    for name, df in t.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return folder, t


def test_validate_json_on_corrupted_folder(tmp_path, capsys):
    folder, t = _folder(tmp_path, corrupt=True)
    assert main(["validate", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    opp = out["opportunities"]
    assert opp["read"] == 20 and opp["quarantined"] >= 3
    assert opp["read"] == opp["accepted"] + opp["quarantined"]
    assert opp["reasons"]["negative amount"] == 1
    assert opp["reasons"]["unknown stage"] == 1
    assert opp["reasons"]["unparseable date"] == 1
    hist = out["stage_history"]
    assert hist["read"] == len(t["stage_history"])
    assert hist["read"] == hist["accepted"] + hist["quarantined"]
    assert hist["reasons"]["unknown opportunity"] >= 1
    assert set(out) == {
        "opportunities",
        "stage_history",
        "leads",
        "forecast_submissions",
        "quotas",
        "activities",
        "notes",
    }
    assert out["notes"] == []
    assert out["leads"] == {"read": 0, "accepted": 0, "quarantined": 0, "reasons": {}}


def test_validate_text_shows_offending_rows(tmp_path, capsys):
    folder, _ = _folder(tmp_path, corrupt=True)
    assert main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "negative amount" in out and "Nowhere" in out and "first offending rows" in out


def test_validate_clean_folder(tmp_path, capsys):
    folder, _ = _folder(tmp_path, corrupt=False)
    assert main(["validate", str(folder)]) == 0
    assert "no rows quarantined" in capsys.readouterr().out


def test_whole_file_error_exits_2(tmp_path, capsys):
    folder, t = _folder(tmp_path, corrupt=False)
    t["opportunities"].drop(columns="owner").to_csv(folder / "opportunities.csv", index=False)
    assert main(["validate", str(folder), "--json"]) == 2
    captured = capsys.readouterr()
    assert "owner" in json.loads(captured.out)["error"]
    assert "opportunities.csv" in captured.err


def test_validate_a_mapping_file_with_a_yaml_syntax_error_exits_2_with_line_and_column(tmp_path, capsys):
    path = tmp_path / "crm.yml"
    path.write_text("tables:\n  opportunities:\n    source: deals.csv\n   columns: {id: Id\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: not valid YAML")
    assert "line 4, column 4" in err
    assert "not a data source" not in err


def test_console_script_runs(tmp_path):
    folder, _ = _folder(tmp_path, corrupt=True)
    exe = [sys.executable, "-m", "salesforecast.cli", "validate", str(folder), "--json"]
    res = subprocess.run(exe, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["opportunities"]["read"] == 20
    bad = subprocess.run(
        [sys.executable, "-m", "salesforecast.cli", "validate", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "no such file or folder" in bad.stderr


def test_import_and_snapshot_commands(tmp_path, capsys):
    from salesforecast.io import read_snapshots
    from salesforecast.schema import read_canonical

    example = Path(__file__).resolve().parents[1] / "examples" / "mapping" / "acme.yml"
    out = tmp_path / "acme"
    assert main(["import", str(example), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported" in printed and "note:" in printed  # the minimal derived history is explained
    data = read_canonical(out)
    assert len(data.opportunities) == 10 and len(data.stage_history) == 22 and data.notes
    store = tmp_path / "store"
    assert main(["snapshot", str(out), "--store", str(store), "--as-of", "2024-06-03"]) == 0
    assert main(["snapshot", str(out), "--store", str(store), "--as-of", "2024-06-03"]) == 0  # idempotent
    snaps = read_snapshots(store)
    assert len(snaps) == int((~data.opportunities["is_closed"]).sum()) and snaps["as_of"].nunique() == 1
    assert main(["import", str(tmp_path / "nothing.yml"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["process", "mapping", "reports"])
def test_schema_prints_the_json_schema_of_a_configuration_file(kind, capsys):
    assert main(["schema", kind]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["additionalProperties"] is False
    assert {"process": "stages", "mapping": "tables", "reports": "reports"}[kind] in schema["properties"]


def test_schema_of_reports_describes_the_when_condition(capsys):
    assert main(["schema", "reports"]) == 0
    entry = json.loads(capsys.readouterr().out)["$defs"]["ReportEntry"]["properties"]["when"]
    assert entry["type"] == "object" and "source: sample" in entry["description"]
    allowed = entry["additionalProperties"]["anyOf"]
    assert allowed[1]["type"] == "array" and allowed[1]["minItems"] == 1


def test_main_documents_the_exit_statuses():
    from salesforecast import reports

    assert (reports.EXIT_OK, reports.EXIT_FAILED, reports.EXIT_CONFIG, reports.EXIT_NEEDS) == (0, 1, 2, 3)
    assert "3 (``report``) no report failed" in main.__doc__
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "exit status: 0 every report rendered; 3 none failed" in " ".join(out.getvalue().split())
