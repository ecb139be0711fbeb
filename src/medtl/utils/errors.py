"""User-facing errors: one line that names the path and the fix; the CLI exits with code 2."""

from __future__ import annotations


class MedtlError(Exception):
    """An error caused by the user's input (data, config, paths), not by a bug in medtl.

    The CLI prints ``str(error)`` on one line and exits with code 2 (no traceback unless
    ``--debug``).
    """

    exit_code = 2


class ConfigError(MedtlError):
    """A config key or value is wrong."""


class DataError(MedtlError):
    """A data file or folder cannot be used."""


class WeightsError(MedtlError):
    """Pretrained weights are missing or do not match."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a clean teardown; the run folder can be resumed.

    The CLI prints the message and exits 130."""

    def __init__(self, run: object):
        super().__init__(f"interrupted; resume with medtl train train.resume={run}")
        self.run = run


#: what to do about the OS errors the CLI reports on one line (``os_error_line``)
OS_ERROR_ADVICE = {
    "ENOSPC": "the disk is full; free space or choose another output folder",
    "EDQUOT": "the disk quota is exhausted; free space or choose another output folder",
    "EROFS": "the file system is read-only; choose a writable folder",
    "EACCES": "permission denied; choose a folder you can write to or fix its permissions",
    "EPERM": "operation not permitted; choose a folder you can write to",
    "EEXIST": "it already exists; remove it or choose another name",
    "ENOENT": "it does not exist; check the path",
    "ENOTDIR": "a part of the path is a file, not a folder; check the path",
    "EISDIR": "it is a folder where a file was expected; check the path",
}


def os_error_line(exc: OSError) -> str:
    """One line naming the path, the cause and the fix of an ``OSError``."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    path = exc.filename if exc.filename is not None else "(no path)"
    cause = exc.strerror or str(exc) or type(exc).__name__
    advice = OS_ERROR_ADVICE.get(name)
    return f"{path}: {cause}" + (f" [{name}]" if name else "") + (f"; {advice}" if advice else "")
