"""Helpers of the hostile-file tests: damaged documents and the check that a command
refused one (exit code 2, one line naming the file, nothing written)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli

DEEP = 200_000
LIST = "[1, 2, 3]\n"
TAG = "train: !!python/object/apply:os.system ['echo pwned']\n"


def deep_json(n: int = DEEP) -> str:
    return "[" * n + "]" * n


def truncated(text: str) -> str:
    return text[: len(text) // 2]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(capsys, folder: Path, names: str, *args: str) -> str:
    """Run ``medtl ARGS``; assert exit 2, one line on stderr naming ``names`` (the damaged
    file's name), no traceback, and no file under ``folder`` changed; returns the line."""
    before = snapshot(folder)
    code, _out, err = run_cli(capsys, *args)
    lines = [line for line in err.strip().splitlines() if line.startswith("medtl: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
    assert snapshot(folder) == before
    return lines[0]
