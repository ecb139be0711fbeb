"""``train.compile``: ``torch.compile`` the network's forward for training (the engineering
beside the loop, like the layout probe in :mod:`medtl.runtime.memory_format`)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("medtl")


def compile_net(cfg: Any, task: Any, on_features: bool = False) -> bool:
    """``train.compile=inductor|aot_eager``: ``torch.compile`` the network's forward in place
    (``nn.Module.compile``: parameter names, checkpoints and model.pt stay as without it).
    Off by default: on a 2-core CPU inductor compiled for minutes and then trained slower
    (docs/performance.md); it is for GPUs. Returns whether it compiled."""
    backend = cfg.train.compile
    if backend == "none":
        return False
    if on_features:  # cached encoder features: the compiled forward would never run
        log.info("train.compile: not applied (frozen encoder features are cached)")
        return False
    task.net.compile(backend=backend)
    log.info(f"train.compile: network forward compiled with torch.compile(backend={backend!r})")
    return True
