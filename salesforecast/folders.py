"""Folders written whole: staged beside their final place and swapped in by one rename.

- `replace_path` puts a new folder (or file, or symlink) at a name in one step and deletes what was there: the
  report runner publishes ``reports/latest`` with it, `staged_folder` a canonical folder.
- `staged_folder` stages a folder beside its final place (same file system), swaps it in when the block that
  fills it ends, and cleans what a killed writer left beside it.
- `writers_lock` lets a folder's writers share it while the first of them removes what dead writers left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["fsync_dir", "replace_path", "staged_folder", "writers_lock"]

_RENAME_EXCHANGE = 2  # Linux renameat2(2): swap the two names
_RENAME_SWAP = 2  # macOS renamex_np(2): the same
_AT_FDCWD = -100


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # pragma: no cover - no C library to load (Windows)
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` in one atomic step; False when the system or file system cannot.

    Linux's ``renameat2(RENAME_EXCHANGE)`` (glibc 2.28, most local file systems) and macOS's
    ``renamex_np(RENAME_SWAP)``. Any other error (a name missing, no permission) is raised.
    """
    libc = _libc()
    if libc is None:
        return False
    src, dst = os.fsencode(a), os.fsencode(b)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        rc = libc.renameat2(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):  # pragma: no cover - macOS
        rc = libc.renamex_np(src, dst, _RENAME_SWAP)
    else:  # pragma: no cover - other systems
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # the file system cannot swap
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _remove(path: Path) -> None:
    """Delete a folder tree, a file or a symlink (never what a symlink points at)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def replace_path(new: Path, target: Path) -> None:
    """Put `new` (a folder, a file or a symlink) at `target`'s name in one step, and delete what was there.

    Someone reading `target` at any moment, or a process killed at any moment, sees the old one whole or the new
    one whole. A file or symlink replaces another with `os.replace` (atomic everywhere); a folder replacing a
    folder, or a symlink replacing a folder, needs a swap of the two names (`_exchange`: Linux, macOS), after
    which the old one, now at `new`'s name, is deleted. Where a swap is not possible, `target` is renamed aside
    (``NEW.old``) and `new` renamed in: `target` is then missing for the moment between the two renames.

    Parameters
    ----------
    new : Path
        What to put in place; on the same file system as `target` (usually its sibling).
    target : Path
        The name to replace; created when missing.
    """
    new, target = Path(new), Path(target)
    if not os.path.lexists(target) or not (_is_folder(new) or _is_folder(target)):
        os.replace(new, target)
        return
    if _exchange(new, target):
        _remove(new)  # the old one, now at new's name
        return
    aside = new.with_name(f"{new.name}.old")
    _remove(aside)
    os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)  # the old one back
        raise
    _remove(aside)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


@contextlib.contextmanager
def writers_lock(folder: Path, clean: Callable[[], None]) -> Iterator[None]:
    """Hold a shared lock on `folder` while writing into it; the first writer in calls `clean` first.

    Every writer holds a shared ``flock`` on the folder itself (no lock file) while it works. A writer that can
    take the lock exclusively is alone: every writer before it has finished or died (the system drops a dead
    process's locks), so what they left (temporary files) is garbage, and `clean` removes it before the lock is
    shared. Where folders cannot be locked (not POSIX, some network file systems), nothing is cleaned.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - a folder that cannot be opened (Windows)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:  # another writer is at work: what it wrote is not garbage
            alone = False
        except OSError:  # no locks on this file system: nothing is cleaned
            alone = None
        if alone:
            clean()
        if alone is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # drops the lock


def _stage_prefix(target: Path) -> str:
    return f".{target.name}.import-"


def _clean_stages(target: Path) -> None:
    """Remove the staging folders dead writers left beside `target` (called alone, under `writers_lock`).

    A writer killed between the two renames of `replace_path`'s fallback leaves `target` missing and the old
    folder at ``STAGE.old``: that folder, whole, is put back first.
    """
    prefix = _stage_prefix(target)
    left = sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))
    if not os.path.lexists(target):
        aside = [p for p in left if p.name.endswith(".old") and _is_folder(p)]
        if aside:
            with contextlib.suppress(OSError):
                os.replace(aside[0], target)
                left.remove(aside[0])
    for path in left:
        _remove(path)


def _target(out: Path) -> Path:
    """The folder `out` names, symlinks resolved; a `DataFileError` when it cannot be a folder."""
    from salesforecast.schema import DataFileError

    target = out.expanduser().resolve()
    if not target.name:
        raise DataFileError(f"{out}: is the root folder; give a folder to write the canonical tables to", file=str(out))
    if target.exists() and not target.is_dir():
        raise DataFileError(
            f"{out}: is a file, not a folder; give a new folder (or one an earlier import wrote) to write the"
            " canonical tables to",
            file=str(out),
        )
    if os.path.ismount(target):
        raise DataFileError(
            f"{out}: is a mount point, which cannot be swapped for a new folder; give a folder inside it to write the"
            " canonical tables to",
            file=str(out),
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataFileError(
                    f"{out}: {parent} is a file, not a folder; give a folder path to write the canonical tables to",
                    file=str(out),
                )
            break
    return target


def _cannot(out: Path, exc: OSError) -> Exception:
    from salesforecast.schema import DataFileError

    reason = exc.strerror or type(exc).__name__
    return DataFileError(
        f"{out}: cannot write the folder there ({reason}); choose a folder you can write to (the tables are written"
        " to a new folder beside it, then swapped in, so its parent folder must be writable too)",
        file=str(out),
    )


@contextlib.contextmanager
def staged_folder(out: str | Path, owned: Callable[[Path], bool]) -> Iterator[Path]:
    """Write a folder whole: yields an empty folder to fill, put at `out` in one step when the block ends.

    The folder is staged beside `out` (``.NAME.import-XXXX``, on the same file system) and swapped in with
    `replace_path`: a process killed at any moment leaves `out` as it was or as the block wrote it, never a mix,
    and `out` ends with exactly the files the block wrote. A block that raises leaves `out` as it was. Staging
    folders of killed writers are removed by the next writer (`writers_lock` tells dead ones from live ones).

    Parameters
    ----------
    out : str or Path
        The folder to write; created when missing (with its parents). A symlink is followed: the folder it points
        at is replaced.
    owned : callable
        Whether an entry of an existing `out` is one this writer writes. `out` is replaced whole, so an `out`
        holding anything else (a folder of the user's) is refused, and nothing of it is touched.

    Raises
    ------
    DataFileError
        `out` is a file, lies under a file, holds entries `owned` rejects, or cannot be written (its parent is not
        writable, a disk is full); the message names the path and what to do.
    """
    from salesforecast.schema import DataFileError

    out = Path(out)
    target = _target(out)
    if target.is_dir():
        foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir() if not owned(p))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise DataFileError(
                f"{out}: holds files an import does not write ({shown}); the folder is replaced whole, so give a new"
                " or empty folder, or one an earlier import wrote",
                file=str(out),
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot(out, exc) from None
    with writers_lock(target.parent, clean=lambda: _clean_stages(target)):
        stage = target.parent / f"{_stage_prefix(target)}{uuid.uuid4().hex[:12]}"
        try:
            stage.mkdir()
            if target.is_dir():  # the new folder keeps the old one's permissions
                stage.chmod(target.stat().st_mode & 0o7777)
        except OSError as exc:
            raise _cannot(out, exc) from None
        try:
            yield stage
            _fsync_tree(stage)
            replace_path(stage, target)
            fsync_dir(target.parent)
        except OSError as exc:
            _remove(stage)
            raise _cannot(out, exc) from None
        except BaseException:
            _remove(stage)
            raise
