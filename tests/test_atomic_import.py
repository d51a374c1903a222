"""``import`` writes its canonical folder whole (issue 18, items 2, 3, 9 and 10).

- kill -9 at any moment of a re-import leaves the previous import or the new one, never a mix, and the next import
  removes what the killed one left beside the folder;
- the folder holds exactly the files of the last import (no table, ``quarantine.csv`` or notes of an earlier one);
- an ``--out`` that is a file, lies under one, cannot be written or is a folder of the user's is refused in one
  line, exit status 2, nothing touched;
- stray temporary files of killed snapshot appends are removed by the next append, never those of a live one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from salesforecast import folders as _folders
from salesforecast.cli import main
from salesforecast.datasets import generate
from salesforecast.io.snapshot_store import append_snapshot, read_snapshots
from salesforecast.schema import DataFileError, read_canonical

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _import(source: Path, out: Path) -> int:
    return main(["import", str(source), "--out", str(out)])


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """Two canonical sources (A with quarantined rows and a leads table, B clean and without leads) and the
    folders an import of each writes."""
    root = tmp_path_factory.mktemp("crm")
    a = generate(n_opportunities=300, seed=1)[0]
    b = generate(n_opportunities=250, seed=2)[0]
    b.leads = b.leads.iloc[:0]
    b.activities = b.activities[b.activities["lead_id"].isna()]  # no leads, so none of their activities
    a.to_folder(root / "src_a")
    b.to_folder(root / "src_b")
    opps = root / "src_a" / "opportunities.csv"
    lines = opps.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace(",", ",Nowhere-", 3)  # a row with an unknown stage: quarantined
    opps.write_text("".join(lines), encoding="utf-8")
    assert _import(root / "src_a", root / "ref_a") == 0
    assert _import(root / "src_b", root / "ref_b") == 0
    ref_a, ref_b = _files(root / "ref_a"), _files(root / "ref_b")
    assert "quarantine.csv" in ref_a and "leads.csv" in ref_a
    assert "quarantine.csv" not in ref_b and "leads.csv" not in ref_b
    return root, ref_a, ref_b


# ------------------------------------------------------------------------------------------------ stale files
def test_a_reimport_leaves_no_table_quarantine_or_notes_of_an_earlier_import(crm, tmp_path):
    root, ref_a, ref_b = crm
    out = tmp_path / "out"
    assert _import(root / "src_a", out) == 0
    assert _files(out) == ref_a
    assert _import(root / "src_b", out) == 0  # a clean source with no leads
    assert _files(out) == ref_b
    back = read_canonical(out)
    assert back.quarantine.empty and back.leads.empty  # read back: nothing set aside by the earlier import
    assert list(tmp_path.iterdir()) == [out]  # nothing left beside it


def test_a_mapping_import_over_a_canonical_import_keeps_only_its_own_files(crm, tmp_path):
    root, ref_a, _ = crm
    out = tmp_path / "out"
    shutil.copytree(root / "ref_a", out)
    assert _import(REPO / "examples" / "mapping" / "acme.yml", out) == 0
    assert sorted(_files(out)) == [
        "notes.txt",
        "opportunities.csv",
        "process.yml",
        "quarantine.csv",
        "quotas.csv",
        "stage_history.csv",
    ]
    assert read_canonical(out).counts.loc["opportunities"].tolist() == [12, 10, 2]


def test_a_canonical_folder_reimported_onto_itself(crm, tmp_path):
    root, _, ref_b = crm
    out = tmp_path / "out"
    shutil.copytree(root / "ref_b", out)
    out.chmod(0o750)
    assert _import(out, out) == 0
    assert _files(out) == ref_b
    assert (out.stat().st_mode & 0o777) == 0o750  # the new folder keeps the old one's permissions


# ------------------------------------------------------------------------------------------------ kill -9
# One process imports the package once and forks a child per kill point (a fresh interpreter each would cost a
# second apiece). Each child runs `salesforecast import SOURCE --out OUT` and, at its kill point, says "paused"
# and waits to be killed. "mid-table" needs nothing of the new code: the second table is half written.
ZYGOTE = r"""
import os, sys, time
import pandas as pd
from salesforecast.cli import main

def say(*words):  # one write: lines of the children never interleave
    os.write(SAY, (" ".join(map(str, words)) + "\n").encode())

def pause(point):
    say("paused", point)
    time.sleep(300)

def hook(point):
    if point == "mid-table":
        real_to_csv, written = pd.DataFrame.to_csv, []
        def to_csv(self, path, *args, **kwargs):
            real_to_csv(self, path, *args, **kwargs)
            written.append(path)
            if len(written) == 2:
                os.truncate(path, os.path.getsize(path) // 2)
                pause(point)
        pd.DataFrame.to_csv = to_csv
        return
    if point == "any":
        return
    from salesforecast import folders as _folders
    if point == "written":  # every file of the new folder written and flushed, not swapped in yet
        real_fsync = _folders._fsync_tree
        def fsync(folder):
            real_fsync(folder)
            pause(point)
        _folders._fsync_tree = fsync
    elif point == "swapped":  # the new folder in place, the old one (at the staging name) not deleted yet
        real_exchange = _folders._exchange
        def exchange(a, b):
            assert real_exchange(a, b)
            pause(point)
        _folders._exchange = exchange
    elif point == "between-renames":  # no atomic swap here: the old folder renamed aside, the new one not in yet
        _folders._exchange = lambda a, b: False
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if str(dst).endswith(".old"):
                pause(point)
        os.replace = replace

source, jobs = sys.argv[1], sys.argv[2:]
SAY = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the imports' own output goes nowhere
for job in jobs:
    point, out = job.split("=", 1)
    pid = os.fork()
    if pid == 0:
        try:
            hook(point)
            code = main(["import", source, "--out", out])
            say("done", point, code)
        except BaseException as exc:
            say("failed", point, type(exc).__name__)
        os._exit(0)
    say("pid", point, pid)
for _ in jobs:
    os.wait()
"""

# the state of OUT after the kill: the previous import ("a"), the new one ("b"), or missing with the previous
# import whole beside it ("aside", only where the system cannot swap two folders in one step)
POINTS = {"any": "a or b", "mid-table": "a", "written": "a", "swapped": "b", "between-renames": "aside"}


def _staged(out: Path) -> bool:
    """Whether a staging folder beside `out` has a file yet."""
    try:
        return any(p.name.startswith(".out.import-") and any(p.iterdir()) for p in out.parent.iterdir())
    except FileNotFoundError:  # renamed while looked at
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_at_each_point(source: Path, outs: dict[str, Path]) -> None:
    """Run the forked imports and kill -9 each at its point ("any": once its staging folder has a file)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OPENBLAS_NUM_THREADS": "1",  # a process that forks had better have no other thread
        "JE_ARROW_MALLOC_CONF": "background_thread:false",
    }
    jobs = [f"{point}={out}" for point, out in outs.items()]
    zygote = subprocess.Popen(  # its own process group, so that the finally below can end every child
        [sys.executable, "-c", ZYGOTE, str(source), *jobs],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    pids: dict[str, int] = {}
    paused: set[str] = set()

    def read() -> None:
        words = zygote.stdout.readline().split()
        assert words, "the forked imports ended before every kill point was reached"
        if words[0] == "pid":
            pids[words[1]] = int(words[2])
        elif words[0] == "paused":
            paused.add(words[1])
        elif words[0] in ("done", "failed") and words[1] != "any":
            raise AssertionError(f"the import at kill point {words[1]!r} did not stop there: {words}")

    try:
        while "any" not in pids:
            read()
        while _alive(pids["any"]) and not _staged(outs["any"]):
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids["any"], signal.SIGKILL)
        while paused != set(outs) - {"any"}:
            read()
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(zygote.pid, signal.SIGKILL)  # children not seen yet too
        zygote.wait(timeout=60)
        zygote.stdout.close()


def test_kill_9_at_any_moment_of_a_reimport_leaves_the_previous_import_or_the_new_one(crm, tmp_path):
    root, ref_a, ref_b = crm
    outs = {point: tmp_path / point / "out" for point in POINTS}
    for out in outs.values():
        shutil.copytree(root / "ref_a", out)
    _kill_at_each_point(root / "src_b", outs)
    counts = {read_canonical(root / ref).counts["read"].sum() for ref in ("ref_a", "ref_b")}
    for point, expected in POINTS.items():
        out = outs[point]
        beside = sorted(p.name for p in out.parent.iterdir() if p != out)
        assert all(name.startswith(".out.import-") for name in beside), (point, beside)
        if expected == "aside":
            assert not out.exists()
            (aside,) = [out.parent / n for n in beside if n.endswith(".old")]
            assert _files(aside) == ref_a
        else:
            states = {"a": [ref_a], "b": [ref_b]}.get(expected, [ref_a, ref_b])
            assert _files(out) in states, point
            assert read_canonical(out).counts["read"].sum() in counts  # `validate` reads either import whole
        # the next import replaces the folder and removes what the killed one left
        assert _import(root / "src_b", out) == 0, point
        assert _files(out) == ref_b, point
        assert list(out.parent.iterdir()) == [out], point


def test_a_failed_import_after_a_kill_between_the_two_renames_puts_the_previous_import_back(crm, tmp_path, monkeypatch):
    """Without an atomic swap, a kill between the renames leaves the folder missing: the next writer restores it."""
    root, ref_a, _ = crm
    out = tmp_path / "out"
    shutil.copytree(root / "ref_a", out)
    os.replace(out, tmp_path / ".out.import-0123456789ab.old")  # what the killed import left
    (tmp_path / ".out.import-0123456789ab").mkdir()
    data = read_canonical(root / "src_b")

    def broken(self, folder, fmt):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(type(data), "_write_folder", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        data.to_folder(out)
    assert _files(out) == ref_a
    assert list(tmp_path.iterdir()) == [out]


def test_a_failing_import_leaves_the_folder_as_it_was(crm, tmp_path, monkeypatch):
    root, ref_a, _ = crm
    out = tmp_path / "out"
    shutil.copytree(root / "ref_a", out)
    real = pd.DataFrame.to_csv
    calls = []

    def full(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(DataFileError, match=r"out: cannot write the folder there \(No space left on device\)"):
        read_canonical(root / "src_b").to_folder(out)
    assert _files(out) == ref_a
    assert list(tmp_path.iterdir()) == [out]


def test_a_live_writers_staging_folder_is_not_taken(crm, tmp_path):
    """Another import at work holds the parent shared: its staging folder is not garbage."""
    fcntl = pytest.importorskip("fcntl")
    root, _, ref_b = crm
    out = tmp_path / "out"
    live = tmp_path / ".out.import-feedfacecafe"
    live.mkdir()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert _import(root / "src_b", out) == 0
        assert live.is_dir()
    finally:
        os.close(fd)
    assert _import(root / "src_b", out) == 0  # alone now: removed
    assert not live.exists() and _files(out) == ref_b


# ------------------------------------------------------------------------------------------------ bad --out
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", r"error: \S*afile: is a file, not a folder; give a new folder"),
        ("under-file", r"error: \S*afile/sub: \S*afile is a file, not a folder; give a folder path"),
        ("proc", r"error: /proc/x: cannot write the folder there \(.+\); choose a folder you can write to"),
        ("root", r"error: /: is the root folder"),
        ("mount", r"error: /proc: is a mount point, which cannot be swapped for a new folder; give a folder inside"),
    ],
)
def test_an_out_that_cannot_be_a_folder_is_one_line_and_exit_2(crm, tmp_path, capsys, where, message):
    root = crm[0]
    (tmp_path / "afile").write_text("mine", encoding="utf-8")
    out = {
        "file": tmp_path / "afile",
        "under-file": tmp_path / "afile" / "sub",
        "proc": Path("/proc/x"),
        "root": Path("/"),
        "mount": Path("/proc"),
    }[where]
    if where in ("proc", "mount") and not os.path.ismount("/proc"):
        pytest.skip("no /proc here")
    capsys.readouterr()
    assert _import(root / "src_b", out) == 2
    assert re.match(message, _one_line_error(capsys))
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_folder_of_the_users_is_refused_and_left_as_it_is(crm, tmp_path, capsys):
    root = crm[0]
    out = tmp_path / "mine"
    out.mkdir()
    (out / "opportunities.csv").write_text("my own\n", encoding="utf-8")
    (out / "plan.xlsx").write_bytes(b"PK\x03\x04")
    (out / "drafts").mkdir()
    before = {p.name: p.is_dir() or p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert _import(root / "src_b", out) == 2
    err = _one_line_error(capsys)
    assert "holds files an import does not write (drafts/, plan.xlsx)" in err and "new or empty folder" in err
    assert {p.name: p.is_dir() or p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.iterdir()) == [out]


def test_an_empty_folder_and_a_symlink_to_an_import_are_written(crm, tmp_path):
    root, ref_a, ref_b = crm
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _import(root / "src_b", empty) == 0 and _files(empty) == ref_b
    real = tmp_path / "real"
    shutil.copytree(root / "ref_a", real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert _import(root / "src_b", link) == 0
    assert link.is_symlink() and _files(real) == ref_b  # the folder it points at is replaced, the link kept


# ------------------------------------------------------------------------------------------------ replace_path
@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-swap", "two-renames"])
def test_replace_path_puts_a_folder_or_a_link_in_place_and_deletes_the_old(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_folders, "_exchange", lambda a, b: False)
    target, new = tmp_path / "target", tmp_path / "new"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    new.mkdir()
    (new / "new.txt").write_text("new", encoding="utf-8")
    _folders.replace_path(new, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"] and list(tmp_path.iterdir()) == [target]
    # a link over a folder (the runner's latest/ from an older layout), then a link over that link
    (tmp_path / "snap").mkdir()
    link = tmp_path / "link"
    link.symlink_to("snap", target_is_directory=True)
    _folders.replace_path(link, target)
    assert target.is_symlink() and target.resolve() == (tmp_path / "snap").resolve()
    link.symlink_to("target-2", target_is_directory=True)
    _folders.replace_path(link, target)
    assert os.readlink(target) == "target-2" and (tmp_path / "snap").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap", "target"]


# ------------------------------------------------------------------------------------------------ snapshots
def test_the_next_snapshot_append_removes_stray_temporary_files_of_killed_appends(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    data = generate(n_opportunities=200, seed=3)[0]
    store = tmp_path / "snapshots"
    append_snapshot(data, store, as_of="2024-06-02")
    stray = [
        store / ".2024-06-09.parquet.0123456789abcdef0123456789abcdef.tmp",  # a killed append's partial file
        store / ".2024-06-02.parquet.dead.tmp",
    ]
    for p in stray:
        p.write_bytes(b"PAR1\x00")
    mine = store / "notes.txt"  # not the store's: kept
    mine.write_text("x", encoding="utf-8")
    fd = os.open(store, os.O_RDONLY)
    try:  # an append at work (it holds the store shared): its temporary files are not garbage
        fcntl.flock(fd, fcntl.LOCK_SH)
        append_snapshot(data, store, as_of="2024-06-09")
        assert all(p.exists() for p in stray)
    finally:
        os.close(fd)
    append_snapshot(data, store, as_of="2024-06-16")
    assert sorted(p.name for p in store.iterdir()) == [
        "2024-06-02.parquet",
        "2024-06-09.parquet",
        "2024-06-16.parquet",
        "notes.txt",
    ]
    assert read_snapshots(store)["as_of"].nunique() == 3


def test_replace_path_without_a_swap_puts_the_old_folder_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(_folders, "_exchange", lambda a, b: False)
    target, new = tmp_path / "target", tmp_path / "new"
    for folder in (target, new):
        folder.mkdir()
        (folder / f"{folder.name}.txt").write_text(folder.name, encoding="utf-8")
    real = os.replace

    def replace(src, dst):
        if Path(src) == new:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(_folders.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        _folders.replace_path(new, target)
    assert [p.name for p in target.iterdir()] == ["target.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "target"]
