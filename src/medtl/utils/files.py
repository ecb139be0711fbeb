"""Atomic file writing: a kill never leaves a half-written result behind.

Single files go through :func:`atomic_write` (temp file ``.NAME.*.tmp`` + rename); a folder
of results that belong together (``eval/<split>``) is written into a staging folder and
swapped in as a whole (:func:`stage_folder`, :func:`swap_in`, :func:`recover_folders`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path`` (same folder, atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp_path, path)
    except OSError as exc:  # name the file the user asked for, not the temp file
        # (a failed write, e.g. a full disk, carries no file name at all)
        if exc.filename in (str(tmp_path), tmp_path, None):
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` onto ``path`` through :func:`atomic_write`, straight into the temp
    file (faster for a large checkpoint than serialising into a BytesIO first).
    torch reports a failed write (a full disk) as a RuntimeError without its reason, so then
    ``obj`` is serialised in memory and written by Python, whose OSError names the reason
    (ENOSPC) and, through atomic_write, the file. The temp file is opened and closed here:
    a writer torch opened itself stays open while its RuntimeError lives, and its blocks
    with it (on a full disk, run.json could then not be marked failed)."""
    import torch

    def write(tmp: Path) -> None:
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
            return
        except RuntimeError:
            pass
        buf = io.BytesIO()
        torch.save(obj, buf)
        tmp.write_bytes(buf.getbuffer())

    return atomic_write(path, write)


#: a spreadsheet reads a cell starting with one of these as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (``=cmd|...``, ``@SUM(...)``)
    gets a leading apostrophe; numbers, and texts that are numbers (``-0.5``), stay as they are.

    >>> formula_safe("=cmd|' /C calc'!A0"), formula_safe("-0.25"), formula_safe(-1)
    ("'=cmd|' /C calc'!A0", '-0.25', -1)
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def printable(text: str) -> str:
    """``text`` on one line for titles and captions: control characters (a newline in a
    file name) become ``?``.

    >>> printable("a\\nb\\tc")
    'a?b?c'
    """
    return "".join(c if c.isprintable() else "?" for c in text)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text; the header is the union of the rows' keys in first-seen order.
    Every cell and header goes through :func:`formula_safe` (the one CSV writer)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([formula_safe(k) for k in keys])
    writer.writerows([formula_safe(r.get(k, "")) for k in keys] for r in rows)
    return buf.getvalue()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """CSV rows as dicts; a missing file gives no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of records (``env.json``: one per invocation), oldest
    first; a file holding one record (older runs) is a list of one; missing: empty."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return []
    if isinstance(data, dict):
        return [data]
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by None (strict JSON has no NaN) in nested dicts/lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON (NaN -> null) to ``path`` atomically."""
    return atomic_write_text(
        path, json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False) + "\n"
    )


def to_float(value: Any) -> float:
    """A CSV or JSON cell as float; empty, missing or unparsable cells are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def remove_orphan_temps(*folders: str | Path) -> list[Path]:
    """Delete the temp files (``.NAME.*.tmp``) a killed writer left in ``folders`` (call it
    only while holding the folder's lock: a live writer's temp file looks the same)."""
    removed = []
    for folder in folders:
        for path in Path(folder).glob(".*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


STAGING, REPLACED = ".incoming", ".replaced"


def stage_folder(final: str | Path) -> Path:
    """An empty staging folder for the new contents of ``final``
    (``PARENT/.incoming/NAME``); :func:`swap_in` puts it in place."""
    final = Path(final)
    staging = final.parent / STAGING / final.name
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def swap_in(staging: str | Path, final: str | Path) -> Path:
    """Replace ``final`` by the complete ``staging`` folder as a whole: the old folder is
    moved aside (``PARENT/.replaced/NAME``), the new one renamed into place, then the old
    one deleted. A kill in between leaves the old folder for :func:`recover_folders`."""
    staging, final = Path(staging), Path(final)
    old = final.parent / REPLACED / final.name
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        old.parent.mkdir(exist_ok=True)
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    for aside in (final.parent / STAGING, final.parent / REPLACED):
        if aside.is_dir() and not any(aside.iterdir()):
            aside.rmdir()
    return final


def recover_folders(parent: str | Path) -> None:
    """After a kill: put back any old folder that :func:`swap_in` had moved aside without
    its replacement in place, and delete unfinished staging folders (hold the lock)."""
    parent = Path(parent)
    for old in sorted((parent / REPLACED).glob("*")):
        if not (parent / old.name).exists():
            os.replace(old, parent / old.name)
    for aside in (parent / REPLACED, parent / STAGING):
        if aside.is_dir():
            shutil.rmtree(aside)
