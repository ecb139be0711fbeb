"""``medtl export`` names the real cause of a failed write, not the opset."""

from __future__ import annotations

import errno
from importlib.util import find_spec

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(
    find_spec("onnx") is None or find_spec("onnxruntime") is None,
    reason="needs the [onnx] extra",
)  # onnx is imported by the tests that run, not at collection


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_out_under_a_file(seg_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "export", str(seg_run), "--out", str(blocker / "export"))
    line = _one_line(err)
    assert code == 2 and "opset" not in line
    assert "a_file" in line and ("ENOTDIR" in line or "EEXIST" in line), line


@pytest.mark.parametrize(
    "code_, word", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")]
)
def test_full_or_read_only_disk_when_writing(seg_run, tmp_path, capsys, monkeypatch, code_, word):
    import onnx

    def fail(*args, **kwargs):
        raise OSError(code_, __import__("os").strerror(code_))

    monkeypatch.setattr(onnx, "save", fail)
    out = tmp_path / "export"
    code, _, err = run_cli(capsys, "export", str(seg_run), "--out", str(out))
    line = _one_line(err)
    assert code == 2 and "opset" not in line and word in line, line
    assert str(out / "model.onnx") in line
    assert not list(out.glob("*.onnx")) and not list(out.glob(".*.tmp"))  # nothing half-written


def test_exporter_error_quoting_the_disk_is_the_disk(seg_run, tmp_path, capsys, monkeypatch):
    """The TorchScript exporter re-raises write failures as RuntimeError text."""
    import torch

    def fail(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file: No space left on device")

    monkeypatch.setattr(torch.onnx, "export", fail)
    code, _, err = run_cli(capsys, "export", str(seg_run), "--out", str(tmp_path / "e"))
    line = _one_line(err)
    assert code == 2 and "disk is full" in line and "opset" not in line, line


def test_a_real_exporter_error_still_suggests_an_opset(seg_run, tmp_path, capsys, monkeypatch):
    import torch

    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo")

    monkeypatch.setattr(torch.onnx, "export", fail)
    code, _, err = run_cli(capsys, "export", str(seg_run), "--out", str(tmp_path / "e"))
    assert code == 2 and "try another opset" in _one_line(err)
