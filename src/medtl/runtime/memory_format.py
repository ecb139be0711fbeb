"""Memory layout for training (``train.memory_format``): contiguous NCHW or channels_last.

On CPU, channels_last lets oneDNN pick faster convolution kernels for some networks and
sizes and is slower for others, so ``auto`` times one forward+backward step in each layout
on half of the first training batch (:data:`PROBE_SHARE`) and keeps the faster. The probe
leaves the weights (no optimiser step), gradients and BatchNorm statistics exactly as they
were.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from medtl.runtime.device import runs_on_cpu

log = logging.getLogger("medtl")

LAYOUTS = ("contiguous", "channels_last")
PROBE_SHARE = 0.5
"""Share of the batch the probe runs on: its activations then stay under the training
step's, so the probe no longer sets the run's peak memory, and it takes half the time.
Measured on CPU (U-Net, fine-tune, batch 8 at 256 px, two rounds): VGG16-BN's peak
after the probe 3759-4166 MB with the full batch, 1777 MB with half (quiet round), the
probe 48-55 s -> 11 s. One timed step per layout is noisy at any batch: for ResNet-18,
EfficientNet-Lite0 and VGG16-BN at 128 and 256 px the half and the full batch chose the
same layout in 10 of 12 cases, and the full batch chose differently in its two rounds in
2 of 6: the choice is as good as one step's timing, at either batch."""


def memory_format(layout: str) -> torch.memory_format:
    """``"channels_last"`` -> ``torch.channels_last``, anything else -> contiguous."""
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def probe_layouts(task: Any, batch: Any) -> tuple[str, dict[str, float]]:
    """img/s of 1 warm + 1 timed forward/backward of ``task`` per layout on the first
    :data:`PROBE_SHARE` of ``batch`` (at least one image); returns the faster layout
    (``task`` is left in it) and both speeds."""
    x, y, label, _ = batch
    k = max(1, round(x.shape[0] * PROBE_SHARE))
    x, y, label = x[:k], y[:k], label[:k]
    saved = {k: v.clone() for k, v in task.net.state_dict().items()}
    was_training = task.net.training
    speeds: dict[str, float] = {}
    for layout in LAYOUTS:
        set_layout(task, layout)
        task.train()
        for i in range(2):
            t0 = time.perf_counter()
            task.compute_loss(task(x), y, label)["loss"].backward()
            if i == 1:
                speeds[layout] = round(x.shape[0] / (time.perf_counter() - t0), 3)
        task.net.zero_grad(set_to_none=True)
    task.net.load_state_dict(saved)  # BatchNorm running statistics as before the probe
    task.net.train(was_training)
    best = max(speeds, key=lambda k: speeds[k])
    set_layout(task, best)
    return best, speeds


def set_layout(task: Any, layout: str) -> None:
    """Put the network's weights and (through ``task.memory_format``) its inputs in ``layout``."""
    task.net.to(memory_format=memory_format(layout))
    task.memory_format = layout


def choose_layout(cfg: Any, task: Any, loader: Any) -> tuple[str, dict[str, float] | None]:
    """``train.memory_format``: as given, or ``auto`` = the faster of a one-step probe in
    each layout (one CPU process, image batches, not deterministic); otherwise contiguous.
    Returns the layout and the probe's img/s (None without a probe)."""
    t = cfg.train
    layout = t.memory_format
    if layout == "auto":
        on_cpu = runs_on_cpu(t.accelerator)  # CPU-only: oneDNN kernels
        single_cpu = on_cpu and t.devices * t.num_nodes == 1
        batch = next(iter(loader)) if single_cpu and not t.deterministic else None
        if batch is None or isinstance(batch[0], (tuple, list)):  # features: decoder only
            layout = "contiguous"
        else:
            layout, speeds = probe_layouts(task, batch)
            log.info(
                "memory format: "
                + layout
                + " (probe, img/s: "
                + ", ".join(f"{k} {v}" for k, v in speeds.items())
                + ")"
            )
            return layout, speeds
    log.info("memory format: %s (train.memory_format=%s)", layout, t.memory_format)
    set_layout(task, layout)
    return layout, None
