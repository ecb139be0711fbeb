"""Where ``medtl evaluate`` runs: the process settings a user may change, the DDP launch
(Lightning Fabric) and gathering every rank's per-image records in split order."""

from __future__ import annotations

from typing import Any

from medtl.configuration.loading import Config, parse_override, set_key
from medtl.utils.errors import MedtlError

# the settings a user may change when evaluating a run: where and on how many processes
PROCESS_KEYS = (
    "train.devices",
    "train.num_nodes",
    "train.accelerator",
    "train.strategy",
    "train.threads",
)
#: keys that change how predictions are scored, not the model: allowed at evaluation too
SCORING_KEYS = ("data.lesion_labels",)


def apply_process_overrides(cfg: Config, overrides: list[str], device: str = "auto") -> None:
    """Evaluation runs in one process on ``device`` (auto: CUDA, else MPS, else CPU) unless
    ``overrides`` ask for more; how the run was trained (e.g. 2 GPUs) does not decide it.
    ``overrides`` may also set :data:`SCORING_KEYS` (e.g. ``data.lesion_labels=none``: the
    masks are organs, no lesion-level detection)."""
    cfg.train.devices, cfg.train.num_nodes = 1, 1
    cfg.train.accelerator, cfg.train.strategy = device, "auto"
    for text in overrides:
        key, value = parse_override(text)
        if key not in PROCESS_KEYS + SCORING_KEYS:
            raise MedtlError(
                f"evaluate takes only {', '.join(PROCESS_KEYS + SCORING_KEYS)}; '{key}' "
                "belongs to training (the run's config.yaml is used as it is)"
            )
        set_key(cfg, key, value)


def launch_fabric(cfg: Config):
    """A Lightning Fabric (DDP) when ``train.devices x train.num_nodes > 1``, else None.

    Launched by Fabric itself (it re-runs this command once per extra local process), by
    ``torchrun`` or by SLURM, exactly like training.
    """
    t = cfg.train
    if t.devices * t.num_nodes == 1:  # one process: evaluate picks the device itself
        return None
    from lightning.fabric import Fabric

    strategy = "ddp" if t.strategy == "auto" else t.strategy
    fabric = Fabric(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy
    )
    fabric.launch()
    return fabric


def gather_records(records: list[dict[str, Any]], fabric) -> list[dict[str, Any]]:
    """Every rank's records on every rank (one process: unchanged), in split order."""
    if fabric is None or fabric.world_size == 1:
        return records
    import torch.distributed as dist

    parts: list[Any] = [None] * fabric.world_size
    dist.all_gather_object(parts, records)
    return sorted((r for part in parts for r in part), key=lambda r: r["position"])
