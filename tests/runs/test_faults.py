"""Faults: a hostile checkpoint runs nothing, a busy folder is never
destroyed, evaluation results are replaced as a set, OS errors and Ctrl-C are one line.

Kills, Ctrl-C and second processes are real processes: forked children of the test process
(torch already imported, so each costs a fraction of a second) that SIGKILL themselves at a
chosen point, that train until the test sends SIGINT, or that hold a folder's lock while the
test runs the command.
"""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from medtl.cli.parser import main
from medtl.utils.locks import LOCK_FILE, folder_lock
from tests.conftest import TINY, train_in_forked_child

FORK = multiprocessing.get_context("fork")


class Payload:
    """Unpickling this runs a shell command (the classic checkpoint attack)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(ckpt: Path, marker: Path) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["evil"] = Payload(marker)
    torch.save(state, ckpt)


def _copy_run(run: Path, dest: Path) -> Path:
    copy = shutil.copytree(run, dest)
    for p in copy.glob("eval"):
        shutil.rmtree(p)
    return copy


@pytest.fixture(autouse=True)
def _fresh_console():
    """Each ``main()`` binds medtl's console log to the stderr of its own test."""
    import logging

    yield
    log = logging.getLogger("medtl")
    for h in [h for h in log.handlers if getattr(h, "_medtl_console", False)]:
        log.removeHandler(h)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("medtl: error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# ----------------------------------------------------------------------------- code in a checkpoint
def test_payload_in_last_ckpt_runs_nothing(seg_run, tmp_path, capsys):
    run = _copy_run(seg_run, tmp_path / "run")
    (run / "model.pt").unlink()
    marker = tmp_path / "MARKER"
    _plant(run / "checkpoints" / "last.ckpt", marker)
    assert main(["train", "--no-progress", f"train.resume={run}"]) == 2
    line = _one_line_error(capsys)
    assert "last.ckpt" in line and "weights-only" in line
    assert not marker.exists()


@pytest.fixture(scope="module")
def one_cell_compare(phantoms, tmp_path_factory) -> Path:
    """A finished comparison of one finetune cell; tests damage their own copy of it."""
    from medtl.comparison import compare

    out = tmp_path_factory.mktemp("cmp") / "cmp"
    compare([f"data.root={phantoms}", *TINY], [], out=out, cell_list=[["model.strategy=finetune"]])
    return out


def test_payload_in_a_compare_cell_runs_nothing(phantoms, one_cell_compare, tmp_path, capsys):
    out = Path(shutil.copytree(one_cell_compare, tmp_path / "cmp"))
    (fold,) = (out / "cells").glob("*/fold0")
    (fold / "model.pt").unlink()  # a cell compare resumes: last.ckpt and no model.pt
    marker = tmp_path / "MARKER"
    _plant(fold / "checkpoints" / "last.ckpt", marker)
    args = ["compare", f"data.root={phantoms}", *TINY, "--cell", "model.strategy=finetune"]
    assert main([*args, "--out", str(out)]) == 2
    assert "weights-only" in _one_line_error(capsys)
    assert not marker.exists()


# ----------------------------------------------------------------------------- broken files
def test_truncated_last_ckpt_falls_back_to_best(seg_run, tmp_path, caplog):
    from medtl.training.fit import train
    from medtl.training.resume import resume_config

    run = _copy_run(seg_run, tmp_path / "run")
    (run / "model.pt").unlink()
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    orphan = run / "checkpoints" / ".last.ckpt.x1y2.tmp"  # a killed writer's temp file
    orphan.write_bytes(b"half")
    with caplog.at_level("WARNING", logger="medtl"):
        train(resume_config(run), progress=False)
    assert "resuming from best.ckpt" in caplog.text
    assert (run / "model.pt").is_file() and not orphan.exists()
    env = json.loads((run / "env.json").read_text())
    assert isinstance(env, list) and len(env) == 2  # the first command and the resume


def test_no_intact_checkpoint_says_which_folder_to_delete(seg_run, tmp_path, capsys):
    run = _copy_run(seg_run, tmp_path / "run")
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"PK\x03\x04 cut")
    assert main(["train", "--no-progress", f"train.resume={run}"]) == 2
    line = _one_line_error(capsys)
    assert f"delete {run / 'checkpoints'}" in line


@pytest.mark.parametrize(
    "bundle",
    [torch.zeros(3), {"state_dict": {}}, {"config": [], "classes": [], "state_dict": {}}],
    ids=["bare-tensor", "missing-keys", "config-not-a-mapping"],
)
def test_foreign_model_pt_is_one_line(seg_run, tmp_path, capsys, bundle):
    run = _copy_run(seg_run, tmp_path / "run")
    torch.save(bundle, run / "model.pt")
    assert main(["evaluate", str(run)]) == 2
    assert "not a medtl bundle" in _one_line_error(capsys)


# ----------------------------------------------------------------------------- locks
def _hold_lock(folder: Path, ready, release) -> None:
    with folder_lock(folder, "training"):
        ready.set()
        release.wait(30)
    os._exit(0)


def _holder(folder: Path):
    ready, release = FORK.Event(), FORK.Event()
    proc = FORK.Process(target=_hold_lock, args=(folder, ready, release))
    proc.start()
    assert ready.wait(10)
    return proc, release


def test_second_process_on_a_run_exits_2_and_stale_lock_is_taken(seg_run, tmp_path, capsys):
    run = _copy_run(seg_run, tmp_path / "run")
    proc, release = _holder(run)
    before = sorted(p.name for p in run.rglob("*"))
    assert main(["evaluate", str(run)]) == 2
    line = _one_line_error(capsys)
    assert f"{run} is in use by training (PID {proc.pid}" in line
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written or removed
    os.kill(proc.pid, signal.SIGKILL)  # dies holding it: the lock file stays, stale
    proc.join()
    assert (run / LOCK_FILE).is_file()
    with folder_lock(run, "test"):
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    # (no release.set(): the killed child died inside the Event's wait)


def test_compare_never_deletes_a_folder_another_process_owns(
    phantoms, one_cell_compare, tmp_path, capsys
):
    out = Path(shutil.copytree(one_cell_compare, tmp_path / "cmp"))
    args = ["compare", f"data.root={phantoms}", *TINY, "--cell", "model.strategy=finetune"]
    # a live training run in a cell's fold folder, no last.ckpt yet
    (fold,) = (out / "cells").glob("*/fold0")
    shutil.rmtree(fold / "checkpoints")
    (fold / "model.pt").unlink()
    (fold / "work-in-progress").write_text("x")
    proc, release = _holder(fold)
    try:
        assert main([*args, "--out", str(out)]) == 2
        assert "in use by training" in _one_line_error(capsys)
        assert (fold / "work-in-progress").is_file()  # not rmtree'd
        proc2, release2 = _holder(fold.parent)  # a second compare on the same cell
        assert main([*args, "--out", str(out)]) == 2
        assert "in use by" in _one_line_error(capsys)
        release2.set()
        proc2.join(10)
    finally:
        release.set()
        proc.join(10)


# ----------------------------------------------------------------------------- evaluation as a set
def _killed_evaluate(run: Path, point: str) -> None:
    """Evaluate ``run`` with TTA and SIGKILL this process at ``point``."""
    import medtl.evaluation.evaluate as ev
    import medtl.utils.files as io

    # a forked child must not use the parent's intra-op thread pool: with more than one
    # thread (left by an earlier test in this worker) it deadlocked in load_state_dict
    torch.set_num_threads(1)

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "masks":
        real = ev.save_png
        calls = {"n": 0}

        def save_png(*a, **k):
            calls["n"] += 1
            return die() if calls["n"] == 3 else real(*a, **k)

        ev.save_png = save_png
    elif point == "summary":
        real_json = ev.write_summary  # the one writer of summary.json
        ev.write_summary = lambda path, obj: (
            die() if Path(path).name == "summary.json" else real_json(path, obj)
        )
    elif point == "swap":  # between moving the old folder aside and renaming the new one
        real_replace = io.os.replace
        calls = {"n": 0}

        def replace(src, dst):
            real_replace(src, dst)
            if Path(src).parent.name != ".incoming" and Path(dst).parent.name == ".replaced":
                die()

        io.os.replace = replace
    ev.evaluate(run, split="test", tta=True, plots=False)
    os._exit(0)


def _eval_files(run: Path) -> dict[str, bytes]:
    folder = run / "eval" / "test"
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("point", ["masks", "summary", "swap"])
def test_killed_evaluate_keeps_the_old_results_whole(seg_run, tmp_path, point):
    from medtl.evaluation.evaluate import evaluate

    run = _copy_run(seg_run, tmp_path / "run")
    evaluate(run, split="test", plots=False)
    old = _eval_files(run)
    proc = FORK.Process(target=_killed_evaluate, args=(run, point))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    if point == "swap":  # the old folder was moved aside: the next start puts it back
        assert not (run / "eval" / "test").exists()
        from medtl.utils.files import recover_folders

        recover_folders(run / "eval")
    assert _eval_files(run) == old
    assert json.loads((run / "eval" / "test" / "summary.json").read_text())["tta"] is False
    summary = evaluate(run, split="test", tta=True, plots=False)  # cleans up, then replaces
    assert summary["tta"] is True and _eval_files(run) != old
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["test"]


# ----------------------------------------------------------------------------- OS errors, Ctrl-C
def test_full_disk_at_the_first_checkpoint_is_one_line(phantoms, tmp_path, capsys, monkeypatch):
    # what a full disk does (seen on a 2 MB tmpfs): torch.save to a file raises a RuntimeError
    # without the reason, a plain write an OSError without a file name
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, io.BytesIO):
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
            )
        return real_save(obj, f, *args, **kwargs)

    def write_bytes(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    args = [f"data.root={phantoms}", f"output.dir={tmp_path}", *TINY, "output.name=full"]
    assert main(["train", "--no-progress", *args]) == 2
    line = _one_line_error(capsys)
    assert "last.ckpt" in line or "best.ckpt" in line
    assert "No space left on device [ENOSPC]; the disk is full" in line
    facts = json.loads((tmp_path / "full" / "run.json").read_text())
    assert facts["status"] == "failed"


def test_read_only_folder_and_file_as_out_are_one_line(seg_run, tmp_path, capsys, monkeypatch):
    import medtl.utils.files as io

    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["synth", str(target / "sub"), "--n", "2", "--size", "32"]) == 2
    assert str(target) in _one_line_error(capsys)

    run = _copy_run(seg_run, tmp_path / "run")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", k.get("dir"))

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    assert main(["evaluate", str(run)]) == 2
    line = _one_line_error(capsys)
    assert str(run / "eval") in line and "[EROFS]" in line


def _restore_sigint() -> None:
    """A child started from a shell job (``make test &``, nohup, CI runners) inherits SIGINT
    *ignored*: Ctrl-C would do nothing. A terminal's Ctrl-C always reaches a foreground
    medtl; the forked child restores that condition."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_exits_130(phantoms, tmp_path):
    """A real ``medtl train`` process (a fork of this one: torch is imported, so it trains at
    once), interrupted as a user would with Ctrl-C."""
    run = tmp_path / "sig"
    args = [f"data.root={phantoms}", f"output.dir={tmp_path}", *TINY, "output.name=sig"]
    args += ["train.epochs=200"]
    err = tmp_path / "stderr.txt"
    err.write_text("")
    proc = FORK.Process(target=train_in_forked_child, args=(err, args, _restore_sigint))
    proc.start()
    try:
        deadline = time.time() + 180  # generous: a loaded CI machine
        while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        proc.join(120)
    finally:
        if proc.exitcode is None:  # never leave a training behind
            proc.kill()
            proc.join()
    assert proc.exitcode == 130, err.read_text()[-2000:]
    text = err.read_text()
    assert f"interrupted; resume with medtl train train.resume={run}" in text
    assert "Traceback" not in text
    facts = json.loads((run / "run.json").read_text())
    assert facts["status"] == "failed" and "interrupted" in facts["error"]
    assert not (run / LOCK_FILE).exists()
    from medtl.reporting.run_page import run_html

    assert "This run did not finish" in run_html(run)


# ----------------------------------------------------------------------------- names and cells
def test_formula_cells_are_quoted_and_numbers_stay_numbers():
    from medtl.utils.files import csv_text

    text = csv_text([{"image": "=cmd|' /C calc'!A0", "dice": -0.5, "s": "-0.25", "t": "@SUM(A1)"}])
    assert text.splitlines()[1] == "'=cmd|' /C calc'!A0,-0.5,-0.25,'@SUM(A1)"


def test_any_file_name_survives_evaluate_and_report(seg_run, phantoms, tmp_path):
    import csv

    from medtl.evaluation.evaluate import evaluate
    from medtl.reporting import write_report
    from medtl.utils.files import read_csv

    data = tmp_path / "data"  # a CSV manifest can name any file, a newline included
    data.mkdir()
    weird = "=cmd|calc\nline2 $\\frac{$ <b>"
    rows = []
    for k, image in enumerate(sorted((phantoms / "benign").glob("*[0-9].png"))[:4]):
        name = f"{weird}{k}" if k < 2 else image.stem
        shutil.copy(image, data / f"{name}.png")
        shutil.copy(image.with_name(f"{image.stem}_mask.png"), data / f"{name}_m.png")
        rows.append({"image": f"{name}.png", "mask": f"{name}_m.png", "label": "benign"})
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "mask", "label"])
        writer.writeheader()
        writer.writerows(rows)
    run = _copy_run(seg_run, tmp_path / "run")
    evaluate(run, data=data)  # plots on: overlay grid titles and the GIF's captions
    got = read_csv(run / "eval" / "external" / "per_image.csv")
    assert sum(r["image"].endswith(f"{weird}0.png") for r in got) == 1  # quoted, whole
    assert (run / "eval" / "external" / "predictions.gif").is_file()
    html = Path(write_report(run)).read_text(encoding="utf-8")
    assert weird not in html  # escaped wherever it is shown


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims ``w`` x ``h`` pixels (a few bytes on disk, no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_pixel_cap_refuses_a_huge_image_from_its_header(phantoms, tmp_path, capsys):
    from medtl.data.readers.io import pixel_cap, read_image
    from medtl.utils.errors import DataError

    big = _png_header_only(tmp_path / "big.png", 20000, 20000)
    with pytest.raises(DataError, match=r"20000x20000 = 400,000,000 pixels, over the cap"):
        read_image(big)
    with pixel_cap(10**9), pytest.raises(DataError, match="not a readable image"):
        read_image(big)  # past the cap: decoding starts (and fails on the empty data)
    data = shutil.copytree(phantoms, tmp_path / "data")
    target = next((data / "benign").glob("*[0-9].png"))
    _png_header_only(target, 20000, 20000)
    code = main(["train", "--no-progress", f"data.root={data}", f"output.dir={tmp_path}", *TINY])
    assert code == 2 and "over the cap" in _one_line_error(capsys)
