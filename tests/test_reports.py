"""The report runner: configuration, execution with papermill, HTML rendering, run folders and latest/."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from salesforecast import reports
from salesforecast.cli import main
from salesforecast.reports import ConfigError, load_config, output_name, report_header

REPO = Path(__file__).resolve().parent.parent

GOOD = [
    'import pandas as pd\nSOURCE_CODE_MARKER = 1\npd.DataFrame({"who": [name], "n": [n]})',
    'import sys\nprint("a warning", file=sys.stderr)\nprint("hello", name)',
]
BAD = ['raise ValueError("boom <x>")']
FLAKY = ['from pathlib import Path\nif Path("FAIL").exists():\n    raise RuntimeError("flaky failed")\nprint("run", n)']


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reports.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", p.name))


def test_failed_report_does_not_stop_the_others(tmp_path, notebook_factory, capsys):
    notebook_factory("good", GOOD)
    notebook_factory("bad", BAD)
    config = _config(
        tmp_path,
        "reports:\n"
        "  - notebook: good\n"
        "    parameters:\n"
        "      - {}\n"
        "      - {name: '<script>alert(1)</script>', n: 4}\n"
        "  - notebook: bad\n",
    )
    out = tmp_path / "out"
    code = main(["report", "--config", str(config), "--out", str(out), "--jobs", "2"])
    printed = capsys.readouterr().out
    assert code == 1
    assert re.search(r"FAILED\s+bad\s+[\d.]+ s(\s+peak \d[\d.]* [MG]B)?\s+ValueError: boom <x>", printed)
    assert re.search(r"ok\s+good\s+[\d.]+ s", printed) and re.search(r"ok\s+good__script-alert-1-script__4 ", printed)
    assert "\u00a7" not in printed  # short reports print no progress lines (`reports.PROGRESS_AFTER_SECONDS`)

    (run,) = _run_dirs(out)
    names = {p.name for p in run.iterdir()}
    assert names == {
        "good.html",
        "good__script-alert-1-script__4.html",
        "bad.failed.ipynb",
        "index.html",
        "manifest.json",
    }
    failed = nbformat.read(run / "bad.failed.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in failed.cells for o in c.get("outputs", []))

    page = (run / "good__script-alert-1-script__4.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "SOURCE_CODE_MARKER" not in page  # the code is hidden
    assert "hello" in page and "a warning" not in page  # stdout kept, stderr dropped
    assert not re.search(r"<script[^>]*src=[\"']?https?:", page)  # self-contained
    assert "cdnjs" not in page and "mathjax" not in page.lower()

    index = (run / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index and "<script>" not in index
    assert 'href="good.html"' in index and 'href="bad.failed.ipynb"' in index
    assert "ValueError: boom &lt;x&gt;" in index

    latest = out / "latest"
    assert {p.name for p in latest.iterdir()} == {
        "good.html",
        "good__script-alert-1-script__4.html",
        "index.html",
        "manifest.json",
    }
    assert (latest / "good.html").read_bytes() == (run / "good.html").read_bytes()
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["bad"]["status"] == "failed" and manifest["bad"]["html"] is None
    assert manifest["good__script-alert-1-script__4"]["parameters"] == {"name": "<script>alert(1)</script>", "n": 4}
    assert f"../{run.name}/bad.failed.ipynb" in (latest / "index.html").read_text(encoding="utf-8")
    assert not list(run.glob(".*")) and not list(out.glob(".latest-link*"))


# After this cell the kernel answers SIGINT the way ipykernel does inside a message handler (it logs
# "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel" to the stderr it shares with the report command):
# the kernel a shutdown interrupt catches mid-handler, made certain instead of a race.
NOISY_ON_INTERRUPT = [
    "import os, signal\n"
    "def _noise(*args):\n"
    "    os.write(2, b'[IPKernelApp] ERROR | Keyboard' + b'Interrupt caught in kernel\\n')\n"
    "get_ipython().kernel.post_handler_hook = lambda: signal.signal(signal.SIGINT, _noise)\n"
    "print('done')"
]


def test_parallel_reports_keep_the_working_directory_and_a_relative_out_works(
    tmp_path, notebook_factory, monkeypatch, capsys
):
    """papermill's cwd= changed the whole process's directory while reports ran in threads: a relative --out
    was then looked up from a notebook's folder ("output folder ... doesn't exist")."""
    notebook = notebook_factory("where", ['import os\nprint("kernel in", os.path.basename(os.getcwd()))'])
    config = _config(tmp_path, "reports:\n  - notebook: where\n    parameters: [{}, {n: 2}, {n: 4}]\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["report", "--config", str(config), "--out", "out", "--jobs", "2"])
    assert code == 0, capsys.readouterr()
    assert Path.cwd() == work
    (run,) = _run_dirs(work / "out")
    page = (run / "where.html").read_text(encoding="utf-8")
    assert f"kernel in {notebook.parent.name}" in page  # the kernel still starts in the notebook's folder


def test_a_successful_run_prints_no_keyboard_interrupt_and_a_failing_one_still_shows_its_error(
    tmp_path, notebook_factory, capfd
):
    """An idle kernel is shut down without the interrupt jupyter_client sends first, so nothing is logged."""
    notebook_factory("noisy", NOISY_ON_INTERRUPT)
    notebook_factory("bad", BAD)
    out = tmp_path / "out"
    config = _config(tmp_path, "reports:\n  - notebook: noisy\n  - notebook: bad\n")
    assert main(["report", "--config", str(config), "--out", str(out), "--jobs", "1"]) == 1
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    assert re.search(r"ok\s+noisy\s+[\d.]+ s", printed)
    assert re.search(
        r"FAILED\s+bad\s+[\d.]+ s(\s+peak \d[\d.]* [MG]B)?\s+ValueError: boom <x>", printed
    )  # a real error still shows
    assert "KeyboardInterrupt" not in printed and "[IPKernelApp] ERROR" not in printed
    (run,) = _run_dirs(out)
    page = (run / "noisy.html").read_text(encoding="utf-8")
    assert "done" in page and "KeyboardInterrupt" not in page and "IPKernelApp" not in page


def test_failure_keeps_the_last_good_html_in_latest(tmp_path, notebook_factory, capsys):
    flaky = notebook_factory("flaky", FLAKY)
    notebook_factory("other", ['print("other")'])
    config = _config(tmp_path, "reports:\n  - flaky\n  - other\n")
    out = tmp_path / "out"

    first = reports.run_reports(config, out, jobs=2)
    assert first.exit_code == 0
    good = (out / "latest" / "flaky.html").read_bytes()

    (flaky.parent / "FAIL").write_text("", encoding="utf-8")
    second = reports.run_reports(config, out, only=["flaky"], jobs=1)
    assert second.exit_code == 1
    assert second.failed[0].error.startswith("RuntimeError: flaky failed")
    assert (second.run_dir / "flaky.failed.ipynb").exists()
    assert not (second.run_dir / "flaky.html").exists()

    latest = out / "latest"
    assert (latest / "flaky.html").read_bytes() == good  # not overwritten by the failure
    assert (latest / "other.html").exists()  # --only keeps the reports it did not run
    index = (latest / "index.html").read_text(encoding="utf-8")
    assert f"showing the last good report, of run {first.run_dir.name}" in index
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["flaky"]["status"] == "failed" and manifest["flaky"]["html_run"] == first.run_dir.name
    assert manifest["other"]["run"] == first.run_dir.name
    # latest is a link swapped atomically; the superseded snapshot is gone
    assert latest.is_symlink()
    assert [p.name for p in out.glob(".latest-*")] == [latest.resolve().name]
    assert len(_run_dirs(out)) == 2


def test_latest_without_symlinks_is_a_swapped_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def no_symlinks(self, *args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    for n, run_id in enumerate(["20260101T000000Z", "20260102T000000Z"]):
        run_dir = out / run_id
        run_dir.mkdir()
        (run_dir / "r.html").write_text(f"report {n}", encoding="utf-8")
        entry = {
            "name": "r",
            "title": "R",
            "parameters": {},
            "status": "ok",
            "seconds": 1.0,
            "html": "r.html",
            "failed_notebook": None,
            "error": None,
            "run": run_id,
            "generated": "",
            "html_run": run_id,
        }
        reports._update_latest(out, run_dir, run_id, [entry])
        latest = out / "latest"
        assert latest.is_dir() and not latest.is_symlink()
        assert (latest / "r.html").read_text(encoding="utf-8") == f"report {n}"
        assert (latest / "index.html").exists()
    assert not list(out.glob(".latest-*"))


@pytest.mark.parametrize(
    ("config_text", "argv", "message"),
    [
        ("reports:\n  - nosuch\n", [], r"reports\.yml: reports\[0\] \(nosuch\): no notebook .*nosuch\.ipynb"),
        (
            "reports:\n  - notebook: good\n    parameters: {nmae: x}\n",
            [],
            r"reports\.yml: reports\[0\] \(good\): parameter 'nmae' is not a parameter of .*good\.ipynb",
        ),
        ("reports:\n  - good\n", ["-p", "team=emea"], r"-p 'team' is a parameter of none of the selected reports"),
        ("reports:\n  - notebook: good\n    parameters: {n: many}\n", [], r"\(good\): n: expected a value of type int"),
        ("reports:\n  - good\n", ["-p", "n=4.5"], r"\(good\): n: expected a value of type int, got '4\.5'"),
        ("reports:\n  - good\n", ["-p", "noequals"], r"-p 'noequals': expected KEY=VALUE"),
        ("reports:\n  - good\n", ["--only", "nothing"], r"--only 'nothing' names no report"),
        ("reports:\n  - notebook: good\n    colour: red\n", [], r"\(good\): unknown key\(s\) \['colour'\]"),
        ("report:\n  - good\n", [], r"reports\.yml: unknown key\(s\) \['report'\]"),
        ("reports: [\n", [], r"reports\.yml: not valid YAML"),
        (
            "reports:\n  - notebook: good\n    parameters: [{}, {}]\n",
            [],
            r"reports\[0\] \(good\): parameters\[0\] and reports\[0\] \(good\): parameters\[1\] have the same",
        ),
        (
            "reports:\n  - notebook: good\n    parameters: {name: 'postgresql://me:hunter2@db/crm'}\n",
            [],
            r"parameter 'name' holds a URL with a password",
        ),
        (  # a password with a slash in it is a password too
            "reports:\n  - notebook: good\n    parameters: {name: 'postgresql://bob:pa/ss@db/crm'}\n",
            [],
            r"parameter 'name' holds a URL with a password",
        ),
        (
            "reports:\n  - good\n",
            ["-p", "name=host=db password=s3cret"],
            r"parameter 'name' holds a URL with a password",
        ),
        ("reports:\n  - good\n", ["-p", "db_password=x"], r"-p: parameter 'db_password' looks like a secret"),
        ("reports:\n  - good\n", ["-p", "apiKey=x"], r"-p: parameter 'apiKey' looks like a secret"),
    ],
)
def test_configuration_errors_exit_2_before_anything_runs(
    tmp_path, notebook_factory, capsys, monkeypatch, config_text, argv, message
):
    notebook_factory("good", GOOD)
    config = _config(tmp_path, config_text)
    monkeypatch.chdir(tmp_path)
    code = main(["report", "--config", str(config), "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err), err
    assert "hunter2" not in err
    assert not (tmp_path / "out").exists()  # nothing ran, no run folder


def test_missing_config_is_a_configuration_error(tmp_path, capsys):
    assert main(["report", "--config", str(tmp_path / "nope.yml")]) == 2
    assert "nope.yml: report configuration not found" in capsys.readouterr().err


def test_load_config_resolves_names_types_and_titles(tmp_path, notebook_factory):
    notebook_factory("good", GOOD, title="Greeting <report>")
    config = _config(
        tmp_path,
        "timeout: 600\n"
        "reports:\n"
        "  - notebook: good.ipynb\n"
        "    parameters:\n"
        "      - {name: world}\n"
        "      - {name: 'Team EMEA', n: 4}\n"
        "      - {name: /data/raw/acme}\n"
        "      - {name: /other/acme}\n"
        "      - {name: 2024-06-30}\n"
        "  - notebook: good\n"
        "    title: Custom\n"
        "    timeout: 5\n"
        "    parameters: {n: 7}\n",
    )
    plan = load_config(config)
    names = [s.name for s in plan.specs]
    assert names[:2] == ["good", "good__team-emea__4"]
    assert re.fullmatch(r"good__acme-[0-9a-f]{6}", names[2]) and re.fullmatch(r"good__acme-[0-9a-f]{6}", names[3])
    assert names[2] != names[3]
    assert names[4:] == ["good__2024-06-30", "good__7"]
    assert plan.specs[4].parameters == {"name": "2024-06-30"}  # YAML's date read back as text
    titles = [s.title for s in plan.specs]  # each parameter set its own title (two paths both named acme: by name)
    assert titles[:2] + titles[4:] == ["Greeting <report>", "Greeting <report>, name Team EMEA"] + [
        "Greeting <report>, name 30 Jun 2024",
        "Custom",
    ]
    assert titles[2:4] == [f"Greeting <report> ({names[2]})", f"Greeting <report> ({names[3]})"]
    assert [s.timeout for s in plan.specs] == [600.0] * 5 + [5.0]
    assert plan.output == tmp_path / "reports"

    # -p applies to every report: here it makes {name: world} and {n: 7} the same report
    with pytest.raises(ConfigError, match=r"reports\[0\] \(good\): parameters\[0\] and reports\[1\] \(good\) have"):
        load_config(config, params={"n": "7"})


def test_command_line_parameters_take_the_declared_type(tmp_path, notebook_factory):
    notebook_factory("good", GOOD)
    config = _config(tmp_path, "reports:\n  - notebook: good\n    parameters: [{name: ann}, {name: bo}]\n")
    plan = load_config(config, params={"n": "12"}, only=["good__bo__12"])
    assert [s.parameters for s in plan.specs] == [{"name": "bo", "n": 12}]
    plan = load_config(config, params={"n": "3"}, only=["good"])  # n=3 is the default: not in the name
    assert [(s.name, s.parameters["n"]) for s in plan.specs] == [("good__ann", 3), ("good__bo", 3)]


def test_relative_paths_are_resolved_where_they_were_given(tmp_path, notebook_factory, monkeypatch):
    notebook_factory("good", GOOD)
    (tmp_path / "data" / "acme").mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "reports.yml"
    config.write_text(
        "notebooks: ../notebooks\nreports:\n  - notebook: good\n"
        "    parameters: [{name: ../data/acme}, {name: ../data/nothing}, {name: EMEA}]\n",
        encoding="utf-8",
    )
    plan = load_config(config)  # in the file: against the file's folder
    assert [s.parameters["name"] for s in plan.specs] == [str(tmp_path / "data" / "acme"), "../data/nothing", "EMEA"]
    assert [s.name for s in plan.specs] == ["good__acme", "good__nothing", "good__emea"]
    single = _config(tmp_path / "conf", "notebooks: ../notebooks\nreports:\n  - good\n")
    monkeypatch.chdir(tmp_path)  # -p: against the working directory
    assert load_config(single, params={"name": "data/acme"}).specs[0].parameters == {
        "name": str(tmp_path / "data" / "acme")
    }
    assert load_config(single, params={"name": "data/nothing"}).specs[0].parameters == {"name": "data/nothing"}


def test_command_line_parameters_apply_to_the_selected_reports_that_declare_them(tmp_path, notebook_factory):
    notebook_factory("good", GOOD)
    notebook_factory("dated", ["print(as_of)"], parameters='as_of: str = "latest"  # report date')
    config = _config(tmp_path, "reports:\n  - good\n  - dated\n")
    plan = load_config(config, params={"as_of": "2024-06-30"}, only=["dated"])
    assert [(s.name, s.parameters) for s in plan.specs] == [("dated__2024-06-30", {"as_of": "2024-06-30"})]
    both = load_config(config, params={"as_of": "2024-06-30"})  # applied where declared, like --as-of
    assert [s.parameters for s in both.specs] == [{}, {"as_of": "2024-06-30"}]
    with pytest.raises(ConfigError, match=r"-p 'as_of' is a parameter of none of the selected reports \(good\)"):
        load_config(config, params={"as_of": "2024-06-30"}, only=["good"])


def test_as_of_applies_to_notebooks_that_have_it(tmp_path, notebook_factory):
    notebook_factory("dated", ["print(as_of)"], parameters='as_of: str = "latest"  # report date')
    notebook_factory("undated", ["print(1)"])
    config = _config(tmp_path, "reports:\n  - dated\n  - undated\n")
    plan = load_config(config, as_of="2024-06-30")
    assert [(s.name, s.parameters) for s in plan.specs] == [
        ("dated__2024-06-30", {"as_of": "2024-06-30"}),
        ("undated", {}),
    ]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "01_data_quality"),
        ({"source": "sample"}, "01_data_quality"),
        ({"source": "/data/raw/Acme Corp/"}, "01_data_quality__acme-corp"),
        ({"seed": 3, "source": "x"}, "01_data_quality__x__3"),
        ({"as_of": "2024-06-30"}, "01_data_quality__2024-06-30"),
        ({"source": "!!!"}, "01_data_quality__" + hashlib.sha1(b"!!!").hexdigest()[:8]),
    ],
)
def test_output_name(parameters, expected):
    defaults = {"source": "sample", "process": "default", "as_of": "latest", "seed": 0}
    assert output_name("01_data_quality", parameters, defaults) == expected


def test_default_config_is_valid():
    plan = load_config(reports.DEFAULT_CONFIG)
    assert [s.name for s in plan.specs] == [
        "01_data_quality",
        "02_stage_conversion",
        "03_lead_scoring",
        "04_forecast_accuracy",
        "04_forecast_accuracy__2025-11-17__4",
        "05_pipeline_review",
    ]
    assert plan.specs[0].parameters == {}
    assert plan.specs[4].parameters == {"as_of": "2025-11-17", "history": 4}


def test_report_header_escapes_and_masks_passwords():
    header = report_header(
        "Pipeline <b>",
        {"team": "<img src=x onerror=alert(1)>", "source": "postgresql://me:hunter2@db/crm"},
        as_of=pd.Timestamp("2024-06-30 14:05"),
        generated_at=pd.Timestamp("2026-01-02 03:04", tz="UTC").to_pydatetime(),
    )
    text = header.data
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "Pipeline &lt;b&gt;" in text
    assert "hunter2" not in text and "postgresql://me:***@db/crm" in text
    assert "2024-06-30 14:05" in text and "2026-01-02 03:04 UTC" in text


def test_format_table_escapes_and_formats():
    df = pd.DataFrame(
        {
            "name": ["<b>x</b>", None],
            "pct_share": [12.345, float("nan")],
            "when": pd.to_datetime(["2024-06-30", None]),
            "rows": [1234567, 2],
        }
    )
    page = reports.format_table(df, percent=["pct_share"], dates=["when"]).to_html()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x" not in page
    assert "12.3%" in page and "2024-06-30" in page and "1,234,567" in page
    assert "% share" in page  # labels: pct_ prefix shown as %
    assert "(no rows)" in reports.format_table(df.iloc[:0]).to_html()


def test_kernel_name_prefers_the_project_kernel():
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / reports.KERNEL_NAME / "kernel.json"
    expected = reports.KERNEL_NAME if spec.exists() else "python3"
    assert reports.kernel_name() == expected


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        (
            "reports:\n  - notebook: goood\n",
            r"reports\[0\] \(goood\): no notebook .*goood\.ipynb \(did you mean 'good'\?\)",
        ),
        (
            "reports:\n  - notebook: good\n    titel: Hi\n",
            r"reports\[0\] \(good\): unknown key\(s\) \['titel'\] \(did you mean 'title'\?\); allowed: \['audience',",
        ),
        (
            "reports:\n  - notebook: good\n    timeout: soon\n",
            r"reports\[0\] \(good\)\.timeout: must be a positive number",
        ),
        ("timeout: 0\nreports: [good]\n", r"reports\.yml: timeout: must be a positive number of seconds, got 0"),
        (
            "reports:\n  - notebook: good\n    parameters: [{n: 1}, 2]\n",
            r"reports\[0\] \(good\)\.parameters: must be a mapping or a non-empty list of mappings, got \[\{'n'",
        ),
        ("reports: []\n", r"reports\.yml: reports: must not be empty, got \[\]"),
        ("reports:\n  - {title: x}\n", r"reports\.yml: reports\[0\]\.notebook: missing"),
        ("- good\n", r"reports\.yml: must be a mapping, got \['good'\] \(list\)"),
    ],
)
def test_schema_messages_name_the_key_path_the_value_and_a_close_word(tmp_path, notebook_factory, config_text, message):
    notebook_factory("good", GOOD)
    config = _config(tmp_path, config_text)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert re.search(message, str(err.value)), str(err.value)


def test_report_config_json_schema_describes_the_file():
    schema = reports.ReportsFile.model_json_schema()
    assert schema["required"] == ["reports"] and schema["additionalProperties"] is False
    assert schema["$defs"]["ReportEntry"]["required"] == ["notebook"]


# ------------------------------------------------------------------------------------ read this first, report needs
SCRIPT = "<script>alert(1)</script>"
WARNS = [
    'from salesforecast.reports import report_header\nreport_header("Greeting", {"name": name})',
    "import warnings\nfrom salesforecast.models.lead_scoring import LeakageWarning\n"
    "for _ in range(3):\n"
    f"    warnings.warn(\"column '{SCRIPT}' alone separates the outcomes\", LeakageWarning)\n"
    'print("after the warning")',
    "import numpy as np\nnp.log(np.array([0.0]))",
]
NEEDS_LATE = [
    'import warnings\nwarnings.warn("only <b>3</b> periods could be replayed")',
    "from salesforecast.session import ReportNeeds\n"
    'raise ReportNeeds("This report needs <i>leads</i>; there are none.")',
]
NEEDS_OPEN = [
    'from salesforecast.session import open_report\nreport = open_report(name, needs=("opportunities", "leads"))'
]
HOSTILE_NOTE = f"Owners of {SCRIPT} are known by their user id only."


def _box(page: str) -> str:
    match = re.search(r'<section id="read-this-first".*?</section>', page, re.DOTALL)
    return match.group(0) if match else ""


@pytest.fixture
def limits_run(tmp_path, notebook_factory, crm_folder, capsys):
    """One run: warnings in cells; a ReportNeeds after a warning; open_report's needs unmet; a clean report; a
    report skipped by its when: condition."""
    folder = crm_folder
    (folder / "leads.csv").unlink()
    (folder / "notes.txt").write_text(HOSTILE_NOTE + "\n", encoding="utf-8")
    notebook_factory("warns", WARNS)
    notebook_factory("late", NEEDS_LATE)
    notebook_factory("opening", NEEDS_OPEN, title="Lead <scoring>")
    notebook_factory("good", GOOD)
    config = _config(
        tmp_path,
        "reports:\n  - warns\n  - late\n  - good\n"
        f"  - notebook: opening\n    parameters: {{name: '{folder}'}}\n"
        "  - notebook: good\n    when: {n: [5, 6]}\n    parameters: {name: skipped}\n",
    )
    out = tmp_path / "out"
    code = main(["report", "--config", str(config), "--out", str(out), "--jobs", "2"])
    return code, capsys.readouterr().out, out


def test_warnings_open_the_report_in_a_read_this_first_box_and_needs_render_a_page(limits_run):
    code, printed, out = limits_run
    assert code == reports.EXIT_NEEDS == 3  # no failure, two needs pages
    assert "skipped good__skipped: runs only when n is 5 or 6 (here: 3)" in printed
    assert re.search(r"needs\s+late\s+[\d.]+ s(\s+peak \d[\d.]* [MG]B)?\s+This report needs <i>leads</i>", printed)
    assert "2 rendered, 2 need data they lack (a page says what), 0 failed, 1 skipped" in printed
    latest = out / "latest"

    page = (latest / "warns.html").read_text(encoding="utf-8")
    box = _box(page)
    assert page.count('id="read-this-first"') == 1
    assert page.index('class="salesforecast-header"') < page.index('id="read-this-first"') < page.index("after the")
    assert re.search(
        r"<b>Leakage:</b> column (&#x27;|')&lt;script&gt;alert\(1\)&lt;/script&gt;(&#x27;|') alone sep", box
    )
    assert "<b>Calculation:</b> divide by zero encountered in log" in box
    assert box.count("alone separates") == 1  # raised three times, shown once
    assert page.count("alone separates") == 2  # and once, small, where it arose
    assert SCRIPT not in page and "ipykernel_" not in page and ".py:" not in page  # escaped; no file or line
    assert _box((latest / "good.html").read_text(encoding="utf-8")) == ""  # nothing limits it: no box

    late = (latest / "late.html").read_text(encoding="utf-8")
    assert '<section id="report-needs">' in late and "Traceback" not in late
    assert "This report needs &lt;i&gt;leads&lt;/i&gt;; there are none." in late
    assert "only &lt;b&gt;3&lt;/b&gt; periods could be replayed" in _box(late)  # what it found before it stopped

    opening = (latest / "opening__crm.html").read_text(encoding="utf-8")
    needs = re.search(r'<section id="report-needs">.*?</section>', opening, re.DOTALL).group(0)
    assert "<h1>Lead &lt;scoring&gt;</h1>" in opening
    assert "This report needs leads, which the data lacks: the source provides no leads" in needs
    assert "tables.leads" in needs and "Notes from the data load" in needs
    assert HOSTILE_NOTE.replace(SCRIPT, "&lt;script&gt;alert(1)&lt;/script&gt;") in needs
    assert SCRIPT not in opening and "Traceback" not in opening and "ReportNeeds" not in opening

    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    assert {k: v["status"] for k, v in manifest.items()} == {
        "warns": "ok",
        "late": "needs",
        "good": "ok",
        "opening__crm": "needs",
    }
    assert manifest["late"]["html"] == "late.html" and manifest["late"]["error"] is None
    assert manifest["late"]["needs"].startswith("This report needs <i>leads</i>")
    index = (latest / "index.html").read_text(encoding="utf-8")
    assert '<td class="needs">needs</td>' in index and "2 need data the source lacks" in index
    (run,) = _run_dirs(out)
    assert not list(run.glob("*.ipynb"))  # a needs page is no failure: no notebook kept


def _nb(*cells):
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    built = [new_markdown_cell("# Title")]
    for outputs in cells:
        built.append(new_code_cell("x", outputs=[new_output(**o) for o in outputs]))
    return new_notebook(cells=built)


def _limit(kind, message, label="Note", category="UserWarning"):
    from salesforecast.session import LIMIT_MIMETYPE

    payload = {"kind": kind, "label": label, "category": category, "message": message}
    return {"output_type": "display_data", "data": {LIMIT_MIMETYPE: payload, "text/plain": message}}


def test_render_html_gathers_notes_and_warnings_even_from_stderr_after_the_title():
    stderr = {
        "output_type": "stream",
        "name": "stderr",
        "text": "/tmp/x.py:3: UserWarning: <b>late</b> warning\n  warnings.warn('x')\nnot a warning\n",
    }
    nb = _nb(
        [{"output_type": "stream", "name": "stdout", "text": "first output\n"}],
        [_limit("warning", "small <sample>", "Small sample", "SmallSampleWarning"), stderr],
        [_limit("note", "a <note> of the load", "From the data load", "note"), _limit("note", "a <note> of the load")],
    )
    page = reports.render_html(nb, "T")
    box = _box(page)
    items = re.findall(r"<li>(.*?)</li>", box)
    assert items == [
        "<b>From the data load:</b> a &lt;note&gt; of the load",
        "<b>Small sample:</b> small &lt;sample&gt;",
        "<b>Note:</b> &lt;b&gt;late&lt;/b&gt; warning",
    ]
    assert page.index('id="read-this-first"') < page.index("first output")  # under the title: no header here
    assert page.count("a &lt;note&gt; of the load") == 1  # notes only in the box
    assert "/tmp/x.py" not in page and "not a warning" not in page  # the rest of stderr is still left out
    assert _box(reports.render_html(_nb([{"output_type": "stream", "name": "stdout", "text": "x"}]), "T")) == ""


def test_warnings_raised_before_the_header_are_only_in_the_box_under_it():
    """A warning of the loading cell would stand above the header as a note repeating the box: only the box says it."""
    header = {"output_type": "display_data", "data": {"text/html": '<div class="salesforecast-header">H</div>'}}
    nb = _nb(
        [_limit("warning", "early <warning>", "Forecast", "ForecastWarning")],
        [header],
        [_limit("warning", "later <warning>", "Interval", "IntervalWarning")],
    )
    page = reports.render_html(nb, "T")
    assert page.count("early &lt;warning&gt;") == 1 and "early &lt;warning&gt;" in _box(page)
    assert page.index('class="salesforecast-header"') < page.index('id="read-this-first"')
    # a warning raised further down is in the box and noted where it arose
    assert page.count("later &lt;warning&gt;") == 2


def test_exit_code_is_0_all_rendered_3_some_need_data_1_some_failed(tmp_path):
    spec = reports.ReportSpec("r", "r", tmp_path / "r.ipynb", "R", {})

    def run(*statuses):
        results = [reports.ReportResult(spec, s, 1.0) for s in statuses]
        return reports.RunResult(tmp_path, tmp_path / "latest", results).exit_code

    assert (run("ok"), run("ok", "needs"), run("needs", "failed"), run("ok", "failed")) == (0, 3, 1, 1)


def test_when_conditions_skip_reports_and_are_checked(tmp_path, notebook_factory):
    notebook_factory("good", GOOD)
    config = _config(
        tmp_path,
        "reports:\n  - good\n  - notebook: good\n    when: {name: world}\n    parameters: {n: 9}\n",
    )
    plan = load_config(config)
    assert [s.name for s in plan.specs] == ["good", "good__9"] and plan.skipped == []
    plan = load_config(config, params={"name": "acme"})
    assert [s.name for s in plan.specs] == ["good__acme"]
    assert [(s.name, why) for s, why in plan.skipped] == [
        ("good__acme__9", "runs only when name is 'world' (here: 'acme')")
    ]
    with pytest.raises(ConfigError, match=r"nothing to run: every selected report is skipped here: good__acme__9"):
        load_config(config, params={"name": "acme"}, only=["good__acme__9"])
    bad = _config(tmp_path, "reports:\n  - notebook: good\n    when: {source: sample}\n")
    with pytest.raises(ConfigError, match=r"reports\[0\] \(good\): when: 'source' is not a parameter of"):
        load_config(bad)
    nested = _config(tmp_path, "reports:\n  - notebook: good\n    when: {name: [[a]]}\n")
    with pytest.raises(ConfigError, match=r"reports\[0\] \(good\)\.when\.name: must be a value or a non-empty list"):
        load_config(nested)
    schema = reports.ReportsFile.model_json_schema()
    assert "when" in schema["$defs"]["ReportEntry"]["properties"]


def test_the_sample_only_parameter_set_runs_only_on_the_sample(tmp_path):
    plan = load_config(reports.DEFAULT_CONFIG, params={"source": str(tmp_path)})
    assert [s.notebook for s in plan.specs].count("04_forecast_accuracy") == 1  # the default set still runs
    ((spec, why),) = plan.skipped
    assert spec.parameters["as_of"] == "2025-11-17" and why == f"runs only when source is 'sample' (here: '{tmp_path}')"


def test_a_needs_page_replaces_the_report_in_latest_and_a_failure_does_not(tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def run(run_id, status, text):
        run_dir = out / run_id
        run_dir.mkdir()
        html_name = None if status == "failed" else "r.html"
        if html_name:
            (run_dir / html_name).write_text(text, encoding="utf-8")
        entry = {"name": "r", "title": "R", "parameters": {}, "status": status, "seconds": 1.0, "html": html_name,
                 "failed_notebook": None, "error": None, "needs": None, "run": run_id, "generated": "",
                 "html_run": run_id if html_name else None}  # fmt: skip
        reports._update_latest(out, run_dir, run_id, [entry])
        return (out / "latest" / "r.html").read_text(encoding="utf-8")

    assert run("20260101T000000Z", "ok", "the report") == "the report"
    assert run("20260102T000000Z", "failed", "") == "the report"  # a failure keeps the last good report
    assert run("20260103T000000Z", "needs", "what it needs") == "what it needs"  # the data's answer now
    index = (out / "latest" / "index.html").read_text(encoding="utf-8")
    assert "showing the last good report" not in index and '<td class="needs">needs</td>' in index


def test_a_kernel_that_died_before_its_first_reply_is_started_again():
    """Two kernels starting at once may pick one port: the report is started again, other errors are raised."""
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) < 3:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return x * 2

    assert reports._kernel_start_retried(flaky, 4) == 8 and len(calls) == 3
    calls.clear()

    def always():
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    with pytest.raises(RuntimeError):
        reports._kernel_start_retried(always)
    assert len(calls) == reports._KERNEL_START_RETRIES + 1

    def other():
        calls.append(1)
        raise RuntimeError("a cell failed")

    calls.clear()
    with pytest.raises(RuntimeError, match="a cell failed"):
        reports._kernel_start_retried(other)
    assert len(calls) == 1


# 300 MiB of float64 ones, every page written (np.ones touches them), kept until the kernel shuts down
ALLOCATE_300_MB = ["import numpy as np\nheld = np.ones(300 * 2**20 // 8)\nprint(int(held.sum()))"]


def test_the_report_line_the_manifest_and_the_index_give_the_kernel_peak_memory(tmp_path, notebook_factory, capsys):
    """The kernel's VmHWM, read before its shutdown: above what the notebook held, below that plus a Python's share."""
    notebook_factory("big", ALLOCATE_300_MB)
    out = tmp_path / "out"
    assert main(["report", "--config", str(_config(tmp_path, "reports:\n  - big\n")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "latest" / "manifest.json").read_text(encoding="utf-8"))
    peak = manifest["big"]["peak_rss"]
    if not sys.platform.startswith("linux"):  # no /proc: not measured, and not pretended
        assert peak is None and "peak" not in printed
        return
    assert 300 * 2**20 < peak < 300 * 2**20 + 2**30, peak
    shown = reports.memory_text(peak)
    assert re.search(rf"ok\s+big\s+[\d.]+ s\s+peak {re.escape(shown)}\n", printed), printed
    assert re.fullmatch(r"\d+ MB", shown) and int(shown.split()[0]) > 300
    index = (out / "latest" / "index.html").read_text(encoding="utf-8")
    assert f"peak {shown}</span>" in index


PROGRESS_NOTEBOOK = [
    ("markdown", "# Progress"),
    ("parameters", "n: int = 3"),
    ("markdown", "Some prose, no heading.\n\n## Load the *data*"),
    ("code", "x = n"),
    ("code", "y = x + 1"),
    ("markdown", "## Fit\n\ntext\n\n### The `model`"),
    ("code", "z = y * 2"),
    ("markdown", "## A section without code"),
    ("markdown", "## Last"),
    ("code", "   "),  # blank: not executed, not counted
    ("code", "print(z)"),
]


def _progress_notebook(path: Path) -> Path:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = []
    for kind, source in PROGRESS_NOTEBOOK:
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(
        new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        ),
        path,
    )
    return path


def test_a_long_report_says_each_section_as_its_first_code_cell_starts(tmp_path, monkeypatch):
    """Past `PROGRESS_AFTER_SECONDS` (0 here), a line per heading whose code starts: the last heading of a markdown
    cell, the code cell's number among the notebook's code cells (papermill's injected parameters left out)."""
    _progress_notebook(tmp_path / "notebooks" / "prog.ipynb")
    monkeypatch.setattr(reports, "PROGRESS_AFTER_SECONDS", 0)
    lines: list[str] = []
    config = _config(tmp_path, "reports:\n  - notebook: prog\n    parameters: {n: 5}\n")
    result = reports.run_reports(config, tmp_path / "out", echo=lines.append)
    assert result.exit_code == 0
    progress = [re.sub(r", \d+ s\)$", ", S s)", line) for line in lines if "\u00a7" in line]
    assert progress == [
        "  prog__5: \u00a7 Progress (cell 1/5, S s)",
        "  prog__5: \u00a7 Load the data (cell 2/5, S s)",
        "  prog__5: \u00a7 The model (cell 4/5, S s)",
        "  prog__5: \u00a7 Last (cell 5/5, S s)",
    ]
    assert lines.index(progress_line := next(x for x in lines if "Last" in x)) < next(
        i for i, x in enumerate(lines) if x.lstrip().startswith("ok")
    ), progress_line  # said while it ran, before its result line


def test_progress_waits_for_the_threshold():
    """Under `PROGRESS_AFTER_SECONDS` nothing is said; past it, the section running then, once."""
    import time

    lines: list[str] = []
    run = reports._KernelRun("r", 3, lines.append, time.monotonic())
    run.cell_start(cell={"cell_type": "markdown", "source": "## One"})
    run.cell_execute(cell={"cell_type": "code", "metadata": {}})
    assert lines == [] and run.cell_running.is_set()
    run.cell_executed()
    assert not run.cell_running.is_set()
    run.start -= reports.PROGRESS_AFTER_SECONDS + 1  # the report has now run past the threshold
    run.cell_execute(cell={"cell_type": "code", "metadata": {}})
    run.cell_execute(cell={"cell_type": "code", "metadata": {}})
    assert [re.sub(r", \d+ s\)", ")", x) for x in lines] == ["  r: \u00a7 One (cell 2/3)"]


def test_a_cell_that_keeps_running_is_said_again_every_interval(monkeypatch):
    """A long cell under one heading (a backtest at 1M): said at the threshold, then every PROGRESS_EVERY_SECONDS."""
    import time

    monkeypatch.setattr(reports, "PROGRESS_AFTER_SECONDS", 0)
    monkeypatch.setattr(reports, "PROGRESS_EVERY_SECONDS", 0.4)
    lines: list[str] = []
    run = reports._KernelRun("r", 2, lines.append, time.monotonic())
    run.cell_execute(cell={"cell_type": "code", "metadata": {}})  # no heading yet: no section line
    assert lines == []
    with run.watch():
        time.sleep(1.5)
        run.cell_executed()
        said = len(lines)
        time.sleep(0.6)  # idle between cells: nothing more
    assert 2 <= said <= 5 and len(lines) == said, lines
    assert set(lines) <= {"  r: (cell 1/2, 0 s)", "  r: (cell 1/2, 1 s)"}, lines
    quiet = reports._KernelRun("q", 1, None, time.monotonic() - 100)
    with quiet.watch():  # without `say`, no thread and nothing said
        quiet.cell_execute(cell={"cell_type": "code", "metadata": {}})
