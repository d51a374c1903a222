"""One rule decides what is a secret, and no secret a user passes reaches a file of a report run.

`find_secrets` (salesforecast.io.database) is the rule; `mask_url` hides what it finds and the report runner refuses
a parameter holding anything it finds, so the two cannot disagree. The spellings below passed the runner's check or
were masked only in part before (a URL password with a space, a user with an ``@``, ODBC values with spaces or
braces, ``sslpassword=``, JSON and dict reprs, percent-encoded ODBC strings, secrets inside a YAML mapping): each
is refused with a message that does not show it, and, after one real run and every refused attempt on the same
``--out``, no file under it holds any of them. A configured notebook that is not a notebook is a configuration
error (exit 2, one line naming the file), not a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from salesforecast import reports
from salesforecast.cli import main
from salesforecast.io.database import find_secrets, has_secret, is_secret_name, mask_url
from tests.conftest import write_notebook

PASSWORD = "hunter2"
#: (parameter text, the secret it holds); each passes no check today without being refused and masked whole.
SPELLINGS = [
    ("postgresql://bob:hun/ter2@db/crm", "hun/ter2"),  # issue 18: an unencoded "/" (SQLAlchemy accepts it)
    ("host=db user=bob password=hunter2", PASSWORD),  # issue 18: a libpq keyword string
    ("postgresql://bob:hun ter2@db/crm", "hun ter2"),  # a space in the password
    ("postgresql://bob@corp:hunter2@db/crm", PASSWORD),  # an "@" in the user name
    ("postgresql://bob smith:hunter2@db/crm", PASSWORD),  # a space in the user name
    ("postgresql://bob:hun?ter#2@db/crm", "hun?ter#2"),  # "?" and "#" in the password
    ("host=db password = 'hun ter2'", "hun ter2"),  # libpq: quoted, spaces around "="
    ("host=db password='hun\\'ter2'", "hun\\'ter2"),  # libpq: an escaped quote
    ("host=db sslpassword=hunter2", PASSWORD),  # another libpq password keyword
    ("Driver={ODBC 18};Server=db;UID=bob;PWD=hun ter2;", "hun ter2"),  # ODBC: a value runs to ";"
    ("Driver={ODBC 18};UID=bob;PWD={hun;ter2};", "hun;ter2"),  # ODBC: a braced value
    ("Server=db;User Id=bob;Password=hunter2;", PASSWORD),  # ADO.NET
    ("postgresql://db/crm?user=bob&password=hunter2", PASSWORD),  # a URL query
    ("mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BPWD%3Dhunter2", PASSWORD),  # a percent-encoded ODBC string
    ('{"user": "bob", "password": "hunter2"}', PASSWORD),  # JSON
    ("https://api.example.com/v1?access_token=hunter2", PASSWORD),  # a token in a query
]
#: Texts that hold no secret (paths, periods, URLs without a password, masked values).
PLAIN = [
    "data/raw/acme",
    "sample",
    "FY2024Q3",
    "2024-06-30",
    "Team EMEA",
    "host=db user=bob dbname=crm",
    "postgresql://bob@db:5432/crm",
    "https://example.com:8080/x?y=1",
    "mongodb://db/?authSource=admin",
    "mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Dbob",
    "n_tokens=5",
    "password=***",
    "postgresql://bob:***@db/crm",
    "sqlite:///data/crm.db",
    "bob@example.com at 10:30",
]


# ------------------------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(("text", "secret"), SPELLINGS, ids=[t for t, _ in SPELLINGS])
def test_every_spelling_is_found_and_masked_whole(text, secret):
    assert find_secrets(text)
    assert has_secret(text)
    masked = mask_url(text)
    assert masked != text
    for part in re.split(r"[ /?#;@\\']+", secret):  # no piece of it survives either
        assert len(part) < 3 or part not in masked, masked
    assert "***" in masked


@pytest.mark.parametrize("text", PLAIN)
def test_plain_text_holds_no_secret(text):
    assert find_secrets(text) == [] and not has_secret(text)
    assert mask_url(text) == text


def test_secret_names_and_containers():
    assert all(map(is_secret_name, ["password", "db_password", "PWD", "sslpassword", "apiKey", "AccessToken"]))
    assert not any(map(is_secret_name, ["source", "team", "n_tokens", "bypass", "authSource"]))
    assert has_secret({"url": "postgresql://db/crm", "password": "x"})
    assert has_secret(["sample", {"dsn": "host=db password=x"}])
    assert not has_secret({"url": "postgresql://db/crm", "password": ""})
    assert not has_secret({"team": ["EMEA", 3], "as_of": None})


#: Any password SQLAlchemy reads between "user:" and "@" (all but "@" and line breaks); one of only "*", quotes,
#: brackets and spaces reads as an already masked value, not a secret.
_PASSWORDS = st.text(
    alphabet=st.characters(blacklist_characters="@\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda p: re.search(r"[^\s'\"{}()\[\],;*]", p) is not None)
_USERS = st.text(alphabet="abcXYZ019 @._-", max_size=8)


@settings(max_examples=300, deadline=None)
@given(user=_USERS, password=_PASSWORDS)
def test_every_password_sqlalchemy_reads_in_a_url_is_masked_and_refused(user, password):
    url = f"postgresql://{user}:{password}@db.example.com/crm"
    assert make_url(url).password is not None  # SQLAlchemy reads a password here ...
    assert mask_url(url) == f"postgresql://{user}:***@db.example.com/crm"  # ... and it is masked whole
    with pytest.raises(reports.ConfigError, match="parameter 'source' holds a URL with a password") as err:
        reports._check_secrets({"source": url}, "-p")
    assert url not in str(err.value)


_FRAGMENTS = st.sampled_from(
    [
        *(t for t, _ in SPELLINGS),
        *PLAIN,
        " ",
        ";",
        "&",
        "=",
        ":",
        "@",
        "/",
        "'",
        '"',
        "{",
        "}",
        "%3D",
        "%3B",
        "password",
        "pwd",
        "token",
        "user",
        "x y",
        "://",
        "***",
    ]
)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(_FRAGMENTS, max_size=6))
def test_mask_and_the_runner_check_agree_by_construction(parts):
    text = "".join(parts)
    found = bool(find_secrets(text))
    assert found == (mask_url(text) != text) == has_secret(text)
    try:
        reports._check_secrets({"source": text}, "-p")
        refused = False
    except reports.ConfigError:
        refused = True
    assert refused == found
    assert not find_secrets(mask_url(text))  # masking leaves nothing to find


# ---------------------------------------------------------------------------------------- the runner, end to end
NOTEBOOK_CELLS = ['print("hello", name)']
LEAKY_CELLS = ['import os\nraise ValueError("cannot reach " + os.environ["SF_GUARD_TEST_URL"])']
ENV_PASSWORD = "envs3cretpw"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One real run (a good report and one failing with a URL in its error) on the ``--out`` every attempt uses."""
    base = tmp_path_factory.mktemp("guard")
    write_notebook(base / "notebooks" / "good.ipynb", NOTEBOOK_CELLS, parameters='name: str = "world"')
    write_notebook(base / "notebooks" / "leaky.ipynb", LEAKY_CELLS, parameters='name: str = "world"')
    config = base / "reports.yml"
    config.write_text("reports:\n  - good\n  - leaky\n", encoding="utf-8")
    out = base / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("SF_GUARD_TEST_URL", f"postgresql://bob:{ENV_PASSWORD}@db/crm")
    try:
        lines: list[str] = []
        result = reports.run_reports(config, out, params={"name": "acme"}, jobs=1, echo=lines.append)
    finally:
        mp.undo()
    assert result.exit_code == 1 and [r.spec.notebook for r in result.failed] == ["leaky"]
    assert "cannot reach postgresql://bob:***@db/crm" in result.failed[0].error
    assert any("cannot reach postgresql://bob:***@db/crm" in line for line in lines)
    assert not [line for line in lines if ENV_PASSWORD in line]  # the progress and summary lines
    return base, config, out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_secret_reaches_no_file_of_the_run(run_folder, capsys, monkeypatch):
    base, config, out = run_folder
    monkeypatch.chdir(base)
    before = _files(out)
    assert any(name.endswith(".failed.ipynb") for name in before) and "manifest.json" in "".join(before)
    for text, secret in SPELLINGS:
        configs = {"-p": (config, ["-p", f"name={text}"])}
        in_file = base / "in_file.yml"
        in_file.write_text(f"reports:\n  - notebook: good\n    parameters: {{name: {text!r}}}\n", encoding="utf-8")
        configs["file"] = (in_file, [])
        for how, (cfg, argv) in configs.items():
            code = main(["report", "--config", str(cfg), "--out", str(out), *argv])
            err = capsys.readouterr().err
            assert code == 2, (how, text, err)
            assert "holds a URL with a password" in err and secret not in err, (how, err)
            assert err.count("\n") == 1  # one line, no traceback
    nested = base / "nested.yml"
    nested.write_text(
        "reports:\n  - notebook: good\n    parameters: {name: {url: 'postgresql://db/crm', password: hunter2}}\n",
        encoding="utf-8",
    )
    assert main(["report", "--config", str(nested), "--out", str(out)]) == 2
    assert PASSWORD not in capsys.readouterr().err
    after = _files(out)
    assert after == before  # refused before anything was written
    secrets = [s for _, s in SPELLINGS] + [PASSWORD, ENV_PASSWORD]
    leaks = [(name, s) for name, content in after.items() for s in secrets if s.encode() in content]
    assert leaks == []


def test_a_failed_reports_error_is_masked_in_the_manifest_index_and_notebook(run_folder):
    _, _, out = run_folder
    (failed,) = out.rglob("leaky*.failed.ipynb")
    text = failed.read_text(encoding="utf-8")
    assert "cannot reach postgresql://bob:***@db/crm" in text and ENV_PASSWORD not in text
    manifest = (out / "latest" / "manifest.json").read_text(encoding="utf-8")
    assert "postgresql://bob:***@db/crm" in manifest and ENV_PASSWORD not in manifest


def test_entries_of_earlier_runs_are_masked_in_the_manifest_and_index(tmp_path):
    # the latest/ folder merges the manifests of earlier runs, which a version before this check may have written
    entry = {
        "name": "nb__x",
        "title": "x",
        "parameters": {"source": "host=db password=hunter2", "n": 3},
        "status": "failed",
        "error": "OperationalError: postgresql://bob:hunter2@db/crm refused",
        "run": "r1",
    }
    reports._write_manifest(tmp_path / "manifest.json", [entry])
    written = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    page = reports._index_html("Latest reports", [entry], "r2", here=None)
    for text in (written, page):
        assert PASSWORD not in text and "password=***" in text and "postgresql://bob:***@db/crm" in text


def test_output_names_and_messages_mask_secrets():
    assert PASSWORD not in reports.output_name("nb", {"source": "host=db password=hunter2"}, {"source": "sample"})
    assert reports._shown({"password": "hunter2"}) == "{'password': ***}"
    with pytest.raises(reports.ConfigError) as err:
        reports._parse_params(["postgresql://bob:hunter2@db/crm"])
    assert PASSWORD not in str(err.value)


# --------------------------------------------------------------------------------- a notebook that is not one
@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not json", "NotJSONError"),
        (b"", "NotJSONError"),
        (b"{}", "ValidationError"),
        (b"[1, 2]", "AttributeError"),
        (bytes(range(200, 256)) * 4, "UnicodeDecodeError"),
    ],
    ids=["text", "empty", "empty-object", "list", "binary"],
)
def test_a_configured_notebook_that_is_not_one_is_a_configuration_error(tmp_path, capsys, monkeypatch, content, why):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "broken.ipynb").write_bytes(content)
    config = tmp_path / "reports.yml"
    config.write_text("reports:\n  - broken\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main(["report", "--config", str(config), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(r"reports\.yml: reports\[0\] \(broken\): notebooks/broken\.ipynb is not a readable Jupyter", err)
    assert why in err and "save it again from Jupyter" in err
    assert not (tmp_path / "out").exists()
