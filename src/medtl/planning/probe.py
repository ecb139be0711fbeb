"""How fast this machine trains a candidate: a few timed optimiser steps of the network
medtl would build, on the device medtl would use, and the memory they took.

Each :class:`Measure` is one (encoder, image size, batch) on random images: one warm-up
step, then ``steps`` timed steps (forward, the training loss, backward, AdamW step), one
timed forward without gradients (the validation cost) and one timed checkpoint write (the
weights and optimiser state, as Lightning saves them each epoch). On the CPU the steps are
timed in both memory layouts (:mod:`medtl.runtime.memory_format`) and the faster one is kept,
so that the plan can fix ``train.memory_format`` to the layout it timed; it also times
loading a training batch (:func:`load_seconds`): the DataLoader has no workers there, so
the augmentation of every image runs between the steps. Random weights: the speed of a
network does not depend on its weights.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from medtl.configuration.loading import Config
from medtl.models.build import build_model
from medtl.runtime.device import resolve_precision
from medtl.runtime.memory import peak_rss_mb
from medtl.runtime.memory_format import LAYOUTS, set_layout
from medtl.training.task import MedtlTask

log = logging.getLogger("medtl")


@dataclass
class Measure:
    """One candidate's timings (seconds) and memory (MB) on ``device``."""

    encoder: str
    size: int
    batch: int
    device: str
    precision: str
    step_s: float  # one optimiser step of ``batch`` images
    forward_s: float  # one forward of ``batch`` images without gradients
    checkpoint_s: float  # one checkpoint write
    peak_mb: float  # GPU: peak allocated; CPU: the process's peak resident memory
    static_mb: float  # weights + gradients + AdamW state
    load_s: float = 0.0  # loading one training batch in the training process (CPU)
    layout_steps: dict[str, float] = field(default_factory=dict)  # CPU: step_s per layout

    @property
    def layout(self) -> str:
        """The memory layout ``step_s`` was timed in: the faster of ``layout_steps`` (CPU),
        else contiguous."""
        return faster_layout(self.layout_steps)

    def layout_timings(self) -> str:
        """``layout_steps`` as text, ``contiguous 0.386s, channels_last 0.287s`` ("" if none)."""
        return ", ".join(f"{k} {v:.3f}s" for k, v in self.layout_steps.items())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _candidate(cfg: Config, encoder: str, size: int, n_classes: int) -> MedtlTask:
    c = copy.deepcopy(cfg)
    c.model.encoder, c.data.image_size = encoder, size
    net, _ = build_model(
        c.task,
        c.model.arch,
        encoder,
        "none",
        n_classes=n_classes,
        in_channels=c.model.in_channels,
    )
    return MedtlTask(net, c, n_classes)


def _batch(task: str, batch: int, size: int, n_classes: int, device: torch.device):
    x = torch.rand(batch, 3, size, size, device=device)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.9).float()
    label = torch.randint(0, max(n_classes, 1), (batch,), device=device)
    return x, mask, label


def measure(
    cfg: Config,
    encoder: str,
    size: int,
    batch: int,
    device: torch.device,
    n_classes: int = 0,
    steps: int = 2,
) -> Measure:
    """Time ``steps`` optimiser steps of ``cfg``'s network with ``encoder`` at ``size`` px
    (see the module docstring)."""
    precision = resolve_precision(cfg.train.precision, device.type)
    task = _candidate(cfg, encoder, size, n_classes).to(device).train()
    opt = torch.optim.AdamW(task.parameters(), lr=1e-4)
    x, mask, label = _batch(cfg.task, batch, size, n_classes, device)
    bf16 = precision.startswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_layout = {}
    for layout in LAYOUTS if device.type == "cpu" else ("contiguous",):
        set_layout(task, layout)
        per_layout[layout] = _step_seconds(task, opt, (x, mask, label), autocast, device, steps)
    layout = faster_layout(per_layout)
    set_layout(task, layout)
    task.eval()
    with torch.no_grad(), autocast:
        _sync(device)
        t0 = time.perf_counter()
        task(x)
        _sync(device)
        forward = time.perf_counter() - t0
    ckpt = _checkpoint_seconds(task, opt)
    load = load_seconds(cfg.data.augment, size, batch) if device.type == "cpu" else 0.0
    n_params = sum(p.numel() for p in task.parameters())
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
    )
    return Measure(
        encoder=encoder,
        size=size,
        batch=batch,
        device=device.type,
        precision=precision,
        step_s=per_layout[layout],
        forward_s=round(forward, 4),
        checkpoint_s=round(ckpt, 4),
        peak_mb=round(peak, 1),
        static_mb=round(n_params * 16 / 2**20, 1),  # fp32 weights, gradients, 2 AdamW moments
        load_s=round(load, 4),
        layout_steps=per_layout if len(per_layout) > 1 else {},
    )


def faster_layout(steps: dict[str, float]) -> str:
    """The layout with the shortest step of ``steps`` (layout -> seconds); contiguous when
    none was timed."""
    return min(steps, key=lambda k: steps[k]) if steps else "contiguous"


def _step_seconds(
    task: MedtlTask, opt, batch: tuple, autocast, device: torch.device, steps: int
) -> float:
    """The median (lower) of ``steps`` timed optimiser steps after one warm-up step."""
    x, mask, label = batch
    times = []
    for i in range(steps + 1):
        _sync(device)
        t0 = time.perf_counter()
        with autocast:
            loss = task.compute_loss(task(x), mask, label)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return round(sorted(times)[(len(times) - 1) // 2], 4)


def load_seconds(augment: str, size: int, batch: int, repeats: int = 2) -> float:
    """Seconds to load one training batch as :class:`~medtl.data.dataset.CachedDataset`
    does in the training process: ``batch`` cached ``uint8`` images and masks at ``size``
    px through one draw of the ``augment`` level each, to float, stacked (the mean of
    ``repeats`` batches after a warm-up one)."""
    from medtl.data.transforms import apply_augment, build_augment, to_float

    aug = build_augment(augment)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    masks = (torch.rand(batch, 1, size, size, generator=g) > 0.9).to(torch.uint8)

    def one() -> None:
        pairs = [apply_augment(aug, images[i], masks[i]) for i in range(batch)]
        torch.stack([to_float(x) for x, _ in pairs]), torch.stack([m.float() for _, m in pairs])

    one()
    t0 = time.perf_counter()
    for _ in range(repeats):
        one()
    return (time.perf_counter() - t0) / repeats


def _checkpoint_seconds(task: MedtlTask, opt: torch.optim.Optimizer) -> float:
    """One ``torch.save`` of the weights and optimiser state to a temporary file."""
    with tempfile.TemporaryDirectory(prefix="medtl-plan-") as tmp:
        t0 = time.perf_counter()
        torch.save(
            {"state_dict": task.state_dict(), "optimizer": opt.state_dict()}, Path(tmp) / "c.ckpt"
        )
        return time.perf_counter() - t0


def device_memory_mb(device: torch.device) -> float | None:
    """The memory the device has: the GPU's total, or the host's available memory (Linux
    ``MemAvailable``); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
