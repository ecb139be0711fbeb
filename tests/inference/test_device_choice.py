"""``--device`` on the inference commands: auto is the CPU here (no GPU on the test
machines), cpu gives the same masks, and a GPU that is not there is one line, exit 2."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import run_cli


def _image(phantoms):
    return next(p for p in sorted(phantoms.rglob("*.png")) if not p.stem.endswith("_mask"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_predict_auto_and_cpu_agree_and_cuda_is_refused(seg_run, phantoms, tmp_path, capsys):
    image = _image(phantoms)
    code, out, err = run_cli(
        capsys, "predict", str(seg_run), str(image), "--out", str(tmp_path / "a")
    )
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "predict", str(seg_run), str(image), "--out", str(tmp_path / "c"), "--device", "cpu"
    )
    assert code == 0, err
    name = f"{image.stem}_mask.png"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
    for command in (["predict", str(seg_run), str(image), "--out", str(tmp_path / "g")],
                    ["evaluate", str(seg_run), "--no-plots"],
                    ["explain", str(seg_run), str(image), "--out", str(tmp_path / "x")]):  # fmt: skip
        code, out, err = run_cli(capsys, *command, "--device", "cuda")
        assert code == 2, (command, err)
        assert "device cuda asked for but torch sees none" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_loaded_model_and_throughput_follow_the_device(seg_run):
    from medtl.comparison.throughput import throughput
    from medtl.inference.predictor import load

    assert load(seg_run, device="cpu").device == torch.device("cpu")
    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert load(seg_run).device.type == where  # auto
    assert throughput(seg_run, min_s=0.0, min_iters=1, device="cpu")["infer_device"] == "cpu"
