"""Inference throughput of a trained run, measured on this machine after training (on the
device inference uses: auto = CUDA, else MPS, else CPU).

compare writes it to ``RUN/timing.json`` (``infer_img_per_s``) so the results table can
show speed next to quality.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["throughput"]


def throughput(
    run: Path, min_s: float = 0.25, min_iters: int = 3, device: str = "auto"
) -> dict[str, Any]:
    """Forward-pass images/s of the saved model on ``device`` (batch = train batch).

    One warm-up call, then at least ``min_iters`` calls and until ``min_s`` seconds have
    passed (at most 100 calls).

    Returns:
        ``{"infer_img_per_s", "infer_batch", "infer_device", "threads"}``.
    """
    import torch

    from medtl.inference.engine import infer
    from medtl.runs.folder import load_bundle
    from medtl.runtime.device import resolve_device

    net, cfg, _ = load_bundle(run)
    where = resolve_device(device)
    net = net.to(where)
    size = cfg.data.image_size
    x = torch.rand(cfg.train.batch_size, cfg.model.in_channels, size, size)
    infer(net, x)  # warm-up: first call pays for allocation
    n, t0 = 0, time.perf_counter()
    while n < min_iters or (time.perf_counter() - t0 < min_s and n < 100):
        infer(net, x)  # the copy to the device and back counts, as in predict
        n += 1
    elapsed = time.perf_counter() - t0
    return {
        "infer_img_per_s": n * x.shape[0] / elapsed,
        "infer_batch": int(x.shape[0]),
        "infer_device": where.type,
        "threads": torch.get_num_threads(),
    }
