"""Checkpoints read without running code: the resume checkpoint, chosen and checked.

Every checkpoint is loaded with ``torch.load(weights_only=True)``: tensors and plain values
only, so a ``last.ckpt`` that carries a pickled ``__reduce__`` payload is refused before any
of it runs (a run folder someone sent you is data, not a program). A medtl ``last.ckpt``
needs no extra allowlisted globals (checked with
``torch.serialization.get_unsafe_globals_in_checkpoint``: none), so nothing is allowlisted.

A truncated or corrupt ``last.ckpt`` (a full disk, a copy cut short) is not fatal: resume
falls back to the newest intact checkpoint of the run (``best.ckpt``) with a log line.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from medtl.utils.errors import MedtlError

log = logging.getLogger("medtl")
LIGHTNING_KEYS = ("state_dict", "loops", "epoch")
__all__ = ["UnsafeCheckpoint", "load_checkpoint", "load_into", "resume_checkpoint"]


class UnsafeCheckpoint(MedtlError):
    """A checkpoint holds objects other than tensors and plain values."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``path`` loaded weights-only; :class:`UnsafeCheckpoint` when it carries code objects,
    ``ValueError`` (with the reason) when it is unreadable or not a Lightning checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise UnsafeCheckpoint(
                f"{path}: holds objects other than tensors and plain values (a pickled "
                "program?); medtl loads checkpoints weights-only and refuses it; delete the "
                "file (or the run folder) if you do not trust where it came from"
            ) from None
        raise ValueError(f"unreadable ({exc.__class__.__name__})") from None
    except Exception as exc:  # truncated zip, garbage, an empty file
        raise ValueError(f"unreadable ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in LIGHTNING_KEYS):
        raise ValueError("not a Lightning checkpoint (missing state_dict/loops/epoch)")
    return state


def resume_checkpoint(run: Path) -> Path | None:
    """The checkpoint to resume ``run`` from: ``last.ckpt`` when it is intact, else the
    newest intact ``*.ckpt`` (logged); None when the run has no ``last.ckpt``.

    Raises :class:`UnsafeCheckpoint` for a checkpoint with code in it, and a MedtlError
    naming the file to delete when no checkpoint is intact."""
    folder = Path(run) / "checkpoints"
    last = folder / "last.ckpt"
    if not last.is_file():
        return None
    others = sorted(
        (p for p in folder.glob("*.ckpt") if p.name != last.name),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    problems = []
    for path in [last, *others]:
        try:
            state = load_checkpoint(path)
        except ValueError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if path != last:
            log.warning(
                f"{last} is {problems[0].split(': ', 1)[1]}; resuming from {path.name} "
                f"(epoch {state.get('epoch')}) instead"
            )
        return path
    raise MedtlError(
        f"{last}: no intact checkpoint to resume from ({'; '.join(problems)}); delete "
        f"{folder} to train {run} from the start"
    )


def load_into(net: torch.nn.Module, run: Path, checkpoint: str) -> str:
    """Load ``best`` (already in ``net`` from model.pt), ``last`` or a ``.ckpt`` path into
    ``net`` through :func:`load_checkpoint`; returns the name the results are filed under."""
    if checkpoint == "best":
        return "best"
    path = run / "checkpoints" / "last.ckpt" if checkpoint == "last" else Path(checkpoint)
    if not path.is_file():
        raise MedtlError(
            f"--checkpoint {checkpoint}: {path} not found; give best, last or a .ckpt file of {run}"
        )
    try:
        state = load_checkpoint(path)["state_dict"]
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()}, strict=True)
    except UnsafeCheckpoint:
        raise
    except Exception as exc:  # foreign or corrupt file, another architecture
        raise MedtlError(
            f"--checkpoint {path}: not a checkpoint of this run ({exc.__class__.__name__}); "
            "give best, last or a .ckpt from its checkpoints/ folder"
        ) from None
    return "last" if checkpoint == "last" else path.stem
