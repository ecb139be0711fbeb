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
