"""``RUN/model_summary.txt``: the network's layers, its parameters (trainable / frozen once
the strategy has been applied) and its FLOPs at the training size.

Training writes it (rank 0) just before the fit, so the counts are those of the first
epoch: a ``frozen`` run shows the encoder frozen, ``two_stage`` / ``partial`` show the
stages trainable at epoch 0 (later unfreezing is in ``run.json`` ``unfreeze_epochs``).
The layer table is Lightning's :class:`~lightning.pytorch.utilities.model_summary.ModelSummary`
of the network; the FLOPs come from :func:`medtl.runtime.flops.count_flops` (the one FLOP
counter ``medtl bench`` also uses), for one image of ``3 x S x S`` at ``data.image_size`` S.

Example::

    >>> from medtl.models.build import build_model
    >>> net, _ = build_model("segmentation", "unet", "resnet18", "none")
    >>> counts = parameter_counts(net)
    >>> counts["trainable"] + counts["frozen"] == counts["total"]
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn

from medtl.runtime.flops import count_flops
from medtl.utils.files import atomic_write_text

SUMMARY_FILE = "model_summary.txt"
LAYER_DEPTH = 3  # net.encoder.model.blocks ...: the stages and blocks, not every conv


def parameter_counts(net: nn.Module) -> dict[str, int]:
    """``{"total", "trainable", "frozen"}`` parameter counts of ``net`` as it is now."""
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def forward_flops(net: nn.Module, image_size: int) -> float:
    """FLOPs of one forward pass of one ``3 x S x S`` image, counted in eval mode (no
    BatchNorm statistics change); every module's train/eval mode is restored afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    device = next(net.parameters()).device
    try:
        net.eval()
        return count_flops(net, torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for module, mode in modes:
            module.training = mode


def _layer_rows(task: Any) -> list[list[str]]:
    """One row per module of ``task.net`` down to :data:`LAYER_DEPTH` below it."""
    summary = ModelSummary(task, max_depth=LAYER_DEPTH + 1)
    modules = dict(task.named_modules())
    rows = []
    for name, kind, mode in zip(
        summary.layer_names, summary.layer_types, summary.training_modes, strict=True
    ):
        if name != "net" and not name.startswith("net."):
            continue  # losses and metrics of the LightningModule hold no weights of the net
        c = parameter_counts(modules[name])
        rows.append(
            [name, kind, f"{c['total']:,}", f"{c['trainable']:,}", f"{c['frozen']:,}"]
            + ["train" if mode else "eval"]
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns; the three counts right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        cells = [v.rjust(widths[i]) if 2 <= i <= 4 else v.ljust(widths[i]) for i, v in enumerate(r)]
        return " | ".join(cells).rstrip()

    return [fmt(header), "-" * len(fmt(header)), *map(fmt, rows)]


def model_summary_text(task: Any, image_size: int) -> tuple[str, dict[str, Any]]:
    """The text of model_summary.txt and its numbers (``total``, ``trainable``, ``frozen``,
    ``flops_per_image``) for ``task`` (a :class:`medtl.training.task.MedtlTask`)."""
    cfg, net = task.cfg, task.net
    counts: dict[str, Any] = parameter_counts(net)
    counts["flops_per_image"] = forward_flops(net, image_size)
    m = cfg.model
    header = ["Name", "Type", "Params", "Trainable", "Frozen", "Mode"]
    lines = [
        f"model: task={cfg.task} arch={m.arch} encoder={m.encoder} strategy={m.strategy} "
        f"(epoch 0: {task.current_stages} encoder stages trainable)",
        f"input: 1 x 3 x {image_size} x {image_size} (data.image_size={image_size})",
        "",
        *_table(header, _layer_rows(task)),
        "",
        f"parameters: {counts['total']:,} total, {counts['trainable']:,} trainable, "
        f"{counts['frozen']:,} frozen",
        f"FLOPs per image (one forward at {image_size}x{image_size}, a multiply-add = 2): "
        f"{counts['flops_per_image'] / 1e9:.3f} G ({int(counts['flops_per_image']):,})",
    ]
    return "\n".join(lines) + "\n", counts


def write_model_summary(run: Path, task: Any, facts: Any = None) -> dict[str, Any] | None:
    """Write ``RUN/model_summary.txt`` for ``task`` at its config's ``data.image_size`` and
    put its numbers in run.json as ``parameters`` (``facts``: the run's
    :class:`medtl.runs.facts.RunFacts`). Only the process that writes run.json (rank 0)
    writes it; the others return None."""
    if facts is not None and not facts.write:
        return None
    text, counts = model_summary_text(task, task.cfg.data.image_size)
    atomic_write_text(Path(run) / SUMMARY_FILE, text)
    if facts is not None:
        facts.update(parameters=counts)
    return counts
