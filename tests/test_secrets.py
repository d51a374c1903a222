"""A database password reaches no log line, no executed notebook and no HTML report.

Reports run on a mapping file whose tables live in a real PostgreSQL server; the URL, with its password, comes from
an environment variable the mapping names. Every file a run writes is then searched for the password (as written
and URL-encoded), on a good run and on a run whose password is wrong (a failed notebook is kept for debugging: its
traceback must not carry the URL either).
"""

import logging
import urllib.parse

import pytest

from salesforecast.datasets import generate
from salesforecast.reports import run_reports
from tests.postgres import postgres_url

ENV = "SALESFORECAST_TEST_WAREHOUSE"
PASSWORD = "s3cr3t/P@ss:word%"
MAPPING = f"""\
description: the CRM tables in the team's warehouse
databases:
  warehouse: {{url_env: {ENV}}}
tables:
  opportunities: {{source: {{database: warehouse, table: opportunities}}}}
  stage_history: {{source: {{database: warehouse, table: stage_history}}}}
  forecast_submissions: {{source: {{database: warehouse, table: forecast_submissions}}}}
  quotas: {{source: {{database: warehouse, table: quotas}}}}
"""
CONFIG = """\
reports:
  - notebook: 01_data_quality
  - notebook: 05_pipeline_review
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    import sqlalchemy as sa

    data, _ = generate(n_opportunities=400, seed=5, years=2)
    with postgres_url(tmp_path_factory, password=PASSWORD) as url:
        engine = sa.create_engine(url)
        try:
            for name in ("opportunities", "stage_history", "forecast_submissions", "quotas"):
                getattr(data, name).to_sql(name, engine, index=False)
        finally:
            engine.dispose()
        yield url


def _leaks(folder, texts):
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_text(encoding="utf-8", errors="replace")
            found += [(str(path), t) for t in texts if t in content]
    return found


@pytest.mark.parametrize("password_ok", [True, False], ids=["good-password", "wrong-password"])
def test_the_password_reaches_no_report_notebook_or_log(warehouse, tmp_path, monkeypatch, caplog, capfd, password_ok):
    from pathlib import Path

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    config = tmp_path / "reports.yml"
    config.write_text(CONFIG + f"notebooks: {notebooks}\n", encoding="utf-8")
    mapping = tmp_path / "warehouse.yml"
    mapping.write_text(MAPPING, encoding="utf-8")
    url = warehouse if password_ok else warehouse.set(password=PASSWORD + "x")
    monkeypatch.setenv(ENV, url.render_as_string(hide_password=False))
    out = tmp_path / "reports"
    with caplog.at_level(logging.DEBUG):
        result = run_reports(config, out, params={"source": str(mapping)}, jobs=2)
    secrets = [PASSWORD, urllib.parse.quote(PASSWORD, safe=""), urllib.parse.quote_plus(PASSWORD)]
    if password_ok:
        assert result.exit_code == 0, [r.error for r in result.results]
        assert len(list((out / "latest").glob("*.html"))) == 3  # two reports and the index
    else:
        assert result.exit_code == 1 and len(result.failed) == 2
        assert list(out.rglob("*.failed.ipynb"))  # kept for debugging ...
        assert any("***" in (r.error or "") or "password" in (r.error or "").lower() for r in result.failed)
    assert _leaks(out, secrets) == []  # ... without the password, in any file of the run
    printed = capfd.readouterr()
    for text in secrets:
        assert text not in printed.out and text not in printed.err
        assert text not in caplog.text
