"""Warm start: ``model.init=RUN`` starts training from the whole network of an earlier run.

The earlier run's ``model.pt`` is read by :func:`medtl.runs.folder.load_bundle` (weights only,
``torch.load(weights_only=True)``) and copied layer by layer into the new network:

- every encoder and decoder layer must match by name and shape; the first one that does
  not is a one-line error (exit 2) naming it: another architecture cannot warm-start;
- a head (``seg_head``, ``cls_head``) with another number of outputs (other classes), or
  one the earlier run did not have (segmentation -> multitask), keeps its fresh random
  initialisation, with a log line.

This is the "retrained with previous weights" step of the ResNet18-UNet system: train on
data set A, then ``medtl train data.root=B model.init=runs/A``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medtl.runs.folder import BUNDLE, load_bundle
from medtl.utils.errors import MedtlError

__all__ = ["HEADS", "warm_start"]

log = logging.getLogger("medtl")
HEADS = ("seg_head", "cls_head")


def _run_of(init: str) -> Path:
    path = Path(init)
    if path.is_file() and path.name == BUNDLE:
        return path.parent
    if path.is_dir():
        return path
    what = "not a model.pt" if path.is_file() else "not found"
    raise MedtlError(
        f"model.init={init}: {what}; give a run folder 'medtl train' printed, or its {BUNDLE}"
    )


def _head(key: str) -> str | None:
    first = key.split(".", 1)[0]
    return first if first in HEADS else None


def _mismatch(source: dict, target: dict, init: str, arch: str) -> set[str]:
    """The heads to keep fresh; a MedtlError naming the first other mismatched layer."""
    fresh: set[str] = set()
    for key in list(target) + [k for k in source if k not in target]:
        got, want = source.get(key), target.get(key)
        if got is not None and want is not None and got.shape == want.shape:
            continue
        if _head(key):
            fresh.add(_head(key))
            continue
        if got is None:
            what = "not in the earlier network"
        elif want is None:
            what = "not in this network"
        else:
            what = f"shape {tuple(got.shape)} there, {tuple(want.shape)} here"
        raise MedtlError(
            f"model.init={init}: another architecture ({arch}); first mismatched layer "
            f"'{key}' ({what}); warm-start from a run with the same model.arch/model.encoder"
        )
    return fresh


def warm_start(net: torch.nn.Module, init: str) -> str:
    """Copy the network of run ``init`` (a run folder or its ``model.pt``) into ``net``
    in place; returns a description for the weights line of train.log."""
    run = _run_of(init)
    try:
        earlier, cfg, _ = load_bundle(run)
    except MedtlError as exc:
        raise MedtlError(f"model.init={init}: {exc}") from None
    source, target = earlier.state_dict(), net.state_dict()
    fresh = _mismatch(source, target, init, f"{cfg.model.arch}/{cfg.model.encoder}")
    keep = {k: v for k, v in source.items() if k in target and _head(k) not in fresh}
    net.load_state_dict(keep, strict=False)
    for head in sorted(fresh):
        log.info(
            f"model.init: {head} has another number of outputs than in {run} "
            "(or is new); re-initialised"
        )
    return f"warm start from {run} (whole network" + (
        f"; {', '.join(sorted(fresh))} re-initialised)" if fresh else ")"
    )
