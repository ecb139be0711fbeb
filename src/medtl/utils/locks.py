"""One process per folder: a lock file for a run folder or a comparison cell.

``with folder_lock(run, "training"):`` holds ``RUN/.medtl.lock`` for the block. The lock is
a :class:`filelock.FileLock` on that file (an ``flock``, so the kernel drops it when the
process dies: a kill -9 leaves no stale lock behind); the file records who holds it (PID,
host, start time, command) for the message the next process prints. Where the file system
has no ``flock``, filelock's soft lock (its own PID marker in the file) decides, and the
message names no holder.

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

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from medtl.utils.errors import MedtlError

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


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _soft(lock: FileLock) -> bool:
    """Whether filelock fell back to its soft lock (no ``flock`` here): the file then holds
    filelock's own marker, which a record must not overwrite. Its ``pid`` property reads
    that marker and exists only then."""
    try:
        return getattr(lock, "pid", None) is not None
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def folder_lock(folder: str | Path, what: str = "medtl") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (``what`` names the job in the busy message).

    Raises :class:`FolderBusy` when a live process holds it. The lock file is removed on
    the way out, while still held and only while it is still this process's file (a block
    that removed the whole folder leaves nothing to remove)."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    # read first: filelock releases before tox-dev/filelock#594 empty the file on every try
    holder = lock_holder(folder)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(folder, lock_holder(folder) or holder) from None
    own = None if _soft(lock) else _inode(path)  # soft: filelock removes its marker itself
    try:
        if own is not None:
            path.write_text(json.dumps(_record(what)), encoding="utf-8")
        yield path
    finally:
        try:
            if own is not None and _inode(path) == own:
                path.unlink()
        finally:
            lock.release()
