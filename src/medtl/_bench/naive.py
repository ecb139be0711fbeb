"""The naive reference loop: where its script is, its command line, reading its JSON line.

The script (``naive_baseline.py``: PIL decode every step, plain PyTorch, no Lightning) is
not part of medtl; the caller says where it is (:func:`locate_naive`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medtl.utils.errors import MedtlError

NAIVE_ENV = "MEDTL_NAIVE_BASELINE"
NAIVE_NAME = "naive_baseline.py"


def locate_naive(path: str | Path | None = None) -> Path:
    """The naive baseline script: ``path`` (``medtl bench --naive PATH``), else the file the
    environment variable ``MEDTL_NAIVE_BASELINE`` names, else ``naive_baseline.py`` in the
    current directory, made absolute (the loop runs in a scratch directory);
    :class:`MedtlError` naming the path looked at and both fixes if missing.
    """
    if path is not None:
        found = Path(path)
    elif os.environ.get(NAIVE_ENV):
        found = Path(os.environ[NAIVE_ENV])
    else:
        found = Path.cwd() / NAIVE_NAME
    if not found.is_file():
        raise MedtlError(
            f"naive baseline script not found at {found}; pass its location with "
            f"--naive PATH or set {NAIVE_ENV}=PATH (run_bench(naive_script=PATH))"
        )
    return found.resolve()


def naive_command(
    script: Path,
    data: Path,
    encoder: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    frozen: bool,
) -> list[str]:
    """The naive baseline's command line (``encoder`` is the smp name it passes to smp.Unet)."""
    cmd = [
        sys.executable,
        str(script),
        str(data),
        "--encoder",
        encoder,
        "--size",
        str(size),
        "--batch",
        str(batch),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    return cmd + (["--frozen"] if frozen else [])


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object line in output")


def run_json(cmd: list[str], what: str, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` and return the last JSON object it printed; :class:`MedtlError` (with the
    tail of its stderr) when it fails or prints none."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise MedtlError(f"{what} failed (exit {proc.returncode}): {tail}")
    try:
        return last_json_line(proc.stdout)
    except ValueError:
        raise MedtlError(
            f"{what} printed no JSON line; stdout was: {proc.stdout[-300:]!r}"
        ) from None
