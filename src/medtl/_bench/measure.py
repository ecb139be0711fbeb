"""Pure measurement maths: ratios, medians of repeats, epoch times, FLOPs and MFU."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def ratio(medtl_value: float | None, naive_value: float | None) -> float | None:
    """``medtl / naive`` (speed-up when both are img/s); None when either is missing or 0."""
    if not medtl_value or not naive_value:
        return None
    return round(medtl_value / naive_value, 3)


def median_merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One measurement from repeated ones: the median of every numeric key (others from the
    first run); with several runs, ``repeats_train_img_per_s`` lists the raw values."""
    out = dict(runs[0])
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
    if len(runs) > 1:
        out["repeats_train_img_per_s"] = [r.get("train_img_per_s") for r in runs]
    return out


def epoch_seconds(n_images: int, img_per_s: float | None) -> float | None:
    """Seconds one pass over ``n_images`` takes at ``img_per_s``."""
    if not img_per_s:
        return None
    return round(n_images / img_per_s, 2)


def mfu(flops_per_image: float | None, img_per_s: float | None, peak_gflops: float) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the measured matmul peak (0..1 when the
    peak is measured as :func:`matmul_gflops` does, in the process that ran the model)."""
    if not flops_per_image or not img_per_s or not peak_gflops:
        return None
    return round(flops_per_image * img_per_s / (peak_gflops * 1e9), 4)


def probe_dtype(precision: str) -> torch.dtype:
    """The matmul dtype of a ``train.precision``: what the model's convolutions run in."""
    if str(precision).startswith("bf16"):
        return torch.bfloat16
    if str(precision).startswith("16"):
        return torch.float16
    return torch.float64 if str(precision) == "64" else torch.float32


def matmul_gflops(
    n: int = 2048,
    reps: int = 8,
    warmup: int = 2,
    dtype: torch.dtype = torch.float32,
    rounds: int = 3,
) -> float:
    """The machine's practical peak (GFLOP/s): the best of ``rounds`` timed loops of
    ``reps`` ``n x n`` matmuls in ``dtype`` (``2 n^3`` FLOPs each: one multiply-add is 2,
    as in the model's FLOP count), with the calling process's thread count. The best, not
    the mean: a round slowed by another job under-reads the peak and over-reads MFU."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(warmup):
        a @ b
    best = 0.0
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return round(best, 2)


def conv_gflops(
    channels: int = 64, size: int = 128, batch: int = 8, dtype: torch.dtype = torch.float32
) -> float:
    """Throughput (GFLOP/s) of a 3x3 convolution in channels_last layout, ``2 * 9 * C^2 * H *
    W`` FLOPs per image, best of 3 timed loops: the kernel a U-Net mostly runs."""
    x = torch.randn(batch, channels, size, size, dtype=dtype).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dtype)
    conv = conv.to(memory_format=torch.channels_last)
    flops = 2 * 9 * channels**2 * size * size * batch
    best = 0.0
    with torch.inference_mode():
        for _ in range(2):
            conv(x)
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(4):
                conv(x)
            best = max(best, 4 * flops / (time.perf_counter() - t0) / 1e9)
    return round(best, 2)


def peak_gflops(dtype: torch.dtype = torch.float32) -> float:
    """The practical peak MFU divides by: the best of a 1024 and a 2048 matmul
    (:func:`matmul_gflops`) and a 3x3 convolution (:func:`conv_gflops`) in ``dtype``, timed in
    the calling process with its threads. One 2048 matmul alone under-reads it (on a 2-core
    VM 122 GFLOP/s against 157 for 1024 and 178 for the convolution), which let a network's
    convolutions show an MFU above 1."""
    return max(
        matmul_gflops(n=1024, reps=16, dtype=dtype),
        matmul_gflops(dtype=dtype),
        conv_gflops(dtype=dtype),
    )
