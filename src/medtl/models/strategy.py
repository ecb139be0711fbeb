"""Transfer strategies: which encoder stages train, and with which learning rate.

- ``frozen``: the encoder gets no gradient and stays in eval mode (BatchNorm running
  statistics unchanged); only decoder and heads train.
- ``finetune``: everything trains; encoder lr = ``lr * encoder_lr_mult``.
- ``partial``: only the last ``unfreeze_stages`` of the 5 encoder stages train.
- ``two_stage``: like ``frozen`` for ``warmup_epochs`` epochs, then like ``partial``.

The optimiser always holds every parameter (two groups: encoder, rest); frozen ones simply
have no gradient, so switching stages mid-run needs no new optimiser.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medtl.models.build import Net
from medtl.models.stages import encoder_stages


def trainable_stages(strategy: str, unfreeze_stages: int, epoch: int, warmup_epochs: int) -> int:
    """How many of the encoder's last stages train at ``epoch`` (0..5)."""
    if strategy == "finetune":
        return 5
    if strategy == "frozen":
        return 0
    if strategy == "partial":
        return min(5, unfreeze_stages)
    if strategy == "two_stage":
        return 0 if epoch < warmup_epochs else min(5, unfreeze_stages)
    raise ValueError(f"unknown strategy {strategy}")


def apply_strategy(net: Net, n_trainable: int) -> None:
    """Freeze all but the last ``n_trainable`` encoder stages (requires_grad and eval mode)."""
    stages = encoder_stages(net.encoder)
    frozen: list[nn.Module] = []
    for i, stage in enumerate(stages):
        train_it = i >= len(stages) - n_trainable
        for module in stage:
            module.requires_grad_(train_it)
            if not train_it:
                frozen.append(module)
    if n_trainable == 0:
        net.encoder.requires_grad_(False)
        frozen = [net.encoder]
    net.frozen_modules = frozen
    net.train(net.training)


def param_groups(
    net: Net, lr: float, encoder_lr_mult: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Two optimiser groups: encoder (lr x encoder_lr_mult) and decoder/heads (lr)."""
    enc = list(net.encoder.parameters())
    enc_ids = {id(p) for p in enc}
    rest = [p for p in net.parameters() if id(p) not in enc_ids]
    return [
        {
            "name": "encoder",
            "params": enc,
            "lr": lr * encoder_lr_mult,
            "weight_decay": weight_decay,
        },
        {"name": "decoder+heads", "params": rest, "lr": lr, "weight_decay": weight_decay},
    ]


def describe_groups(net: Net, groups: list[dict[str, Any]]) -> list[str]:
    """One line per group: name, trainable/total parameter counts, lr."""
    lines = []
    for g in groups:
        total = sum(p.numel() for p in g["params"])
        trainable = sum(p.numel() for p in g["params"] if p.requires_grad)
        lines.append(
            f"param group {g['name']}: {trainable:,}/{total:,} trainable, lr={g['lr']:.3g}"
        )
    return lines
