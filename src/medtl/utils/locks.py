"""One process per folder: a lock file for a run folder or a comparison cell.

``with folder_lock(run, "training"):`` holds ``RUN/.medtl.lock`` for the block. The lock is
an ``flock`` on that file, so the kernel drops it when the process dies (a kill -9 leaves
no stale lock behind); the file records who holds it (PID, host, start time, command) for
the message the next process prints. Where the file system has no ``flock`` the record
decides: a lock whose PID is gone on this host is stale and taken over.

A second process on a locked folder gets a :class:`FolderBusy` (one line, exit 2) at once;
nothing waits. Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> with folder_lock(folder, "training"):
    ...     (folder / LOCK_FILE).is_file()
    True
    >>> (folder / LOCK_FILE).exists()
    False
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medtl.utils.errors import MedtlError

try:
    import fcntl
except ImportError:  # Windows: only the PID record decides
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".medtl.lock"
__all__ = ["LOCK_FILE", "FolderBusy", "folder_lock", "lock_holder"]


class FolderBusy(MedtlError):
    """Another live process holds the folder's lock."""


def _record(what: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what": what,
        "argv": sys.argv,
    }


def lock_holder(folder: Path) -> dict[str, Any] | None:
    """The record of the lock file in ``folder`` (None when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _busy(folder: Path, holder: dict[str, Any] | None) -> FolderBusy:
    who = "another process"
    if holder:
        who = (
            f"{holder.get('what', 'medtl')} (PID {holder.get('pid')} on {holder.get('host')}, "
            f"since {holder.get('started')})"
        )
    return FolderBusy(
        f"{folder} is in use by {who}; wait for it to finish or stop it, then run again"
    )


def _stale(holder: dict[str, Any] | None) -> bool:
    """Without flock: a record of a PID that is gone on this host (or no record) is stale."""
    if not holder:
        return True
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and (
        not isinstance(pid, int) or not _pid_alive(pid)
    )


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: held by another process; None: no flock on this file system."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


def _acquire(path: Path, what: str) -> int:
    """The fd of ``path`` locked by this process, its record written; FolderBusy otherwise."""
    for _ in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        got = _try_flock(fd)
        if got is None and not _stale(lock_holder(path.parent)) and os.fstat(fd).st_size:
            got = False
        if got is False:
            os.close(fd)
            raise _busy(path.parent, lock_holder(path.parent))
        try:  # the holder may have removed the file between our open and our lock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            data = json.dumps(_record(what)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return fd
        os.close(fd)
    raise _busy(path.parent, lock_holder(path.parent))


@contextmanager
def folder_lock(folder: str | Path, what: str = "medtl") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (``what`` names the job in the busy message).

    Raises :class:`FolderBusy` when a live process holds it. The lock file is removed on
    the way out, only while it is still this process's file (a block that removed the
    whole folder leaves nothing to remove)."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    fd = _acquire(path, what)
    try:
        yield path
    finally:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)  # drops the flock
