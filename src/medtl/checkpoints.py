"""Which weights ``medtl evaluate --checkpoint`` scores, and the split's loss it reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.config import Config
from medtl.engine.losses import image_losses
from medtl.errors import MedtlError


def split_losses(
    cfg: Config, out: dict[str, torch.Tensor], mask: torch.Tensor, label: torch.Tensor
) -> list[float]:
    """Each image's training loss as the run's config defines it (:func:`image_losses`)."""
    m, t = cfg.model, cfg.train
    weights = (m.seg_weight, m.cls_weight)
    return image_losses(out, mask, label, t.loss, t.cls_loss, weights, t.label_smoothing)


def mean_loss(records: list[dict[str, Any]]) -> float | None:
    """The mean of the records' finite ``loss`` values (None when there is none)."""
    values = [r["loss"] for r in records if np.isfinite(r.get("loss", float("nan")))]
    return round(float(np.mean(values)), 6) if values else None


def load_checkpoint(net: torch.nn.Module, run: Path, checkpoint: str) -> str:
    """Load ``best`` (already in ``net`` from model.pt), ``last`` or a ``.ckpt`` path into
    ``net``; returns the name the results are filed under."""
    if checkpoint == "best":
        return "best"
    path = run / "checkpoints" / "last.ckpt" if checkpoint == "last" else Path(checkpoint)
    if not path.is_file():
        raise MedtlError(
            f"--checkpoint {checkpoint}: {path} not found; give best, last or a .ckpt file of {run}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()}, strict=True)
    except Exception as exc:  # foreign or corrupt file, another architecture
        raise MedtlError(
            f"--checkpoint {path}: not a checkpoint of this run ({exc.__class__.__name__}); "
            "give best, last or a .ckpt from its checkpoints/ folder"
        ) from None
    return "last" if checkpoint == "last" else path.stem
