"""A throwaway PostgreSQL server for tests.

`postgres_url` starts a private server (``initdb`` into a temporary folder, ``pg_ctl start`` on a free port of
127.0.0.1), creates a database and a login role with a password, yields the SQLAlchemy URL of that role (password
included; ``url.password`` holds it) and stops and deletes the server afterwards. Password authentication is
enforced on TCP connections (``scram-sha-256``), so a wrong password really fails. The server runs as user
``postgres`` when the tests run as root (``initdb`` refuses root), as the current user otherwise.

Without the server binaries the test is skipped, saying how to get them (``apt-get install postgresql``;
``.ci/run`` installs them). ``SALESFORECAST_PG_BINDIR`` may name the folder holding ``initdb`` and ``pg_ctl``.

Use it in a module- or session-scoped fixture::

    from tests.postgres import postgres_url

    @pytest.fixture(scope="module")
    def pg_url(tmp_path_factory):
        with postgres_url(tmp_path_factory) as url:
            yield url
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["find_bindir", "postgres_url"]

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: `apt-get install postgresql` installs them "
    "(.ci/run does), or set SALESFORECAST_PG_BINDIR to the folder holding them"
)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None.

    Looked for in ``$SALESFORECAST_PG_BINDIR``, then Debian's ``/usr/lib/postgresql/<version>/bin`` (newest
    first), then ``pg_config --bindir``, then ``PATH``.
    """
    candidates: list[Path] = []
    if os.environ.get("SALESFORECAST_PG_BINDIR"):
        candidates.append(Path(os.environ["SALESFORECAST_PG_BINDIR"]))

    def version(p: str) -> tuple[int, ...]:
        v = Path(p).parent.name
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)[::-1]]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], as_user: str | None, cwd: Path, what: str, log: Path | None = None) -> None:
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            f"\n{server_log}"
        )


def _skip(reason: str) -> None:
    """Skip the test, except in CI (``CI=true``), where `.ci/run` installs PostgreSQL: there, fail loudly."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(reason)


@contextmanager
def postgres_url(
    tmp_path_factory: pytest.TempPathFactory | None = None,
    *,
    database: str = "salesforecast",
    user: str = "forecaster",
    password: str | None = None,
) -> Iterator[URL]:
    """Start a throwaway PostgreSQL server and yield the SQLAlchemy URL of a password-protected role.

    Parameters
    ----------
    tmp_path_factory : pytest.TempPathFactory, optional
        Where the server's folder goes when the tests do not run as root (pytest keeps it for inspection).
        As root the folder is a fresh directory under the system temp folder, owned by ``postgres`` (pytest's
        folders are private to root, so the server could not enter them), and it is deleted at the end.
    database, user : str
        The database to create and the role that owns it.
    password : str, optional
        The role's password (default: a random one holding URL-special characters, ``@`` ``%`` ``/`` ``:``,
        so that quoting and masking are exercised).

    Yields
    ------
    sqlalchemy.engine.URL
        ``postgresql+psycopg://user:password@127.0.0.1:port/database``.

    Notes
    -----
    Skips the calling test (`pytest.skip`) when the binaries are missing or, as root, there is no ``postgres``
    user; with ``CI=true`` it fails instead (CI never skips them). The server listens on 127.0.0.1 only, on a
    free port, with its socket in ``/tmp``; fsync is off (a test server). Local socket connections are trusted
    (the helper creates the role through them); TCP connections need the password.
    """
    from sqlalchemy.engine import URL

    bindir = find_bindir()
    if bindir is None:
        _skip(INSTALL_HINT)
    as_user: str | None = None
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _skip("the tests run as root and there is no 'postgres' user to run the PostgreSQL server as")
        if shutil.which("runuser") is None:
            _skip("the tests run as root and `runuser` is missing: cannot run the PostgreSQL server as postgres")
        as_user = "postgres"
        root = Path(tempfile.mkdtemp(prefix="salesforecast-pg-"))
        os.chown(root, owner.pw_uid, owner.pw_gid)
        cleanup = True
    elif tmp_path_factory is not None:
        root = tmp_path_factory.mktemp("postgres")
        cleanup = False
    else:
        root = Path(tempfile.mkdtemp(prefix="salesforecast-pg-"))
        cleanup = True
    data_dir, log = root / "data", root / "server.log"
    password = password or f"pw@{secrets.token_hex(6)}%2F/:x"
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_user,
            root,
            "initdb",
        )
        for attempt in range(3):
            port = _free_port()
            options = (
                f"-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
                " -c full_page_writes=off"
            )
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data_dir),
                        "-l",
                        str(log),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    as_user,
                    root,
                    "pg_ctl start",
                    log,
                )
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="/tmp", port=port, user="postgres", dbname="postgres", autocommit=True) as con:
            con.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
            con.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))
        yield URL.create(
            "postgresql+psycopg", username=user, password=password, host="127.0.0.1", port=port, database=database
        )
    finally:
        if (data_dir / "postmaster.pid").exists():  # started, or half-started
            try:
                _run(
                    [str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                    as_user,
                    root,
                    "stop",
                )
            except (RuntimeError, OSError, subprocess.SubprocessError):
                pass
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)
