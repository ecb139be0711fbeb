"""On a CUDA GPU (skipped elsewhere; benchmarks/gpu_check.sh runs them): training picks the
GPU and bf16 by itself, and predict/evaluate on the GPU agree with the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import train_tiny

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_run(phantoms, tmp_path_factory):
    # no train.accelerator / train.precision: the defaults (auto) must find the GPU
    return train_tiny(phantoms, tmp_path_factory.mktemp("gpu"), "train.epochs=2")


def test_training_defaults_to_the_gpu_and_bf16(gpu_run):
    device = json.loads((gpu_run / "run.json").read_text())["device"]
    assert device["accelerator"] == "cuda" and device["asked"] == "auto"
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32"
    assert device["precision"] == expected
    assert f"device: cuda ({device['name']}" in (gpu_run / "train.log").read_text()


def test_predict_on_the_gpu_matches_the_cpu(gpu_run, phantoms):
    from medtl.inference.predictor import load

    images = sorted(p for p in phantoms.rglob("*.png") if not p.stem.endswith("_mask"))[:4]
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    on_gpu = load(gpu_run, device="cuda", optimise=False)
    assert on_gpu.device.type == "cuda"
    on_cpu = load(gpu_run, device="cpu", optimise=False)
    for a, b in zip(on_gpu.predict_batch(arrays), on_cpu.predict_batch(arrays), strict=True):
        assert (a.mask != b.mask).mean() < 0.01  # fp32 kernels differ only in rounding


def test_evaluate_on_the_gpu_matches_the_cpu(gpu_run):
    from medtl.evaluation.evaluate import evaluate

    gpu = evaluate(gpu_run, split="val", plots=False, device="cuda")
    cpu = evaluate(gpu_run, split="val", plots=False, device="cpu")
    assert gpu["segmentation"]["dice"]["mean"] == pytest.approx(
        cpu["segmentation"]["dice"]["mean"], abs=0.01
    )


def test_throughput_reports_the_gpu(gpu_run):
    from medtl.comparison.throughput import throughput

    assert throughput(gpu_run, min_s=0.1, device="auto")["infer_device"] == "cuda"
