"""Transfer strategies: which encoder stages train, and with which learning rate.

- ``frozen``: the encoder gets no gradient and stays in eval mode (BatchNorm running
  statistics unchanged); only decoder and heads train.
- ``finetune``: everything trains; encoder lr = ``lr * encoder_lr_mult``.
- ``partial``: only the last ``unfreeze_stages`` of the 5 encoder stages train.
- ``two_stage``: like ``frozen`` for ``warmup_epochs`` epochs, then like ``partial``.

The optimiser always holds every parameter (two groups: encoder, rest); frozen ones simply
have no gradient, so switching stages mid-run needs no new optimiser (Lightning's
``unfreeze_and_add_param_group`` would add a third group mid-run, outside the cosine
schedule's base learning rates). The schedule runs as a ``BaseFinetuning`` callback,
:class:`medtl.training.callbacks.StrategyFinetuning`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch.callbacks.finetuning import BaseFinetuning
from torch import nn

from medtl.models.build import Net
from medtl.models.stages import encoder_stages

#: ``model.strategy`` -> ``(unfreeze_stages, epoch, warmup_epochs) -> trainable stages``
#: (how many of the encoder's last stages train at that epoch, 0..5)
STRATEGIES: dict[str, Callable[[int, int, int], int]] = {
    "frozen": lambda stages, epoch, warmup: 0,
    "finetune": lambda stages, epoch, warmup: 5,
    "partial": lambda stages, epoch, warmup: min(5, stages),
    "two_stage": lambda stages, epoch, warmup: 0 if epoch < warmup else min(5, stages),
}


def trainable_stages(strategy: str, unfreeze_stages: int, epoch: int, warmup_epochs: int) -> int:
    """How many of the encoder's last stages train at ``epoch`` (0..5)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy](unfreeze_stages, epoch, warmup_epochs)


def apply_strategy(net: Net, n_trainable: int) -> None:
    """Freeze all but the last ``n_trainable`` encoder stages, with Lightning's
    :class:`~lightning.pytorch.callbacks.BaseFinetuning` ``freeze`` (BatchNorm included) and
    ``make_trainable``; the frozen modules go to ``net.frozen_modules``, which ``Net.train``
    keeps in eval mode, so their BatchNorm layers normalise with (and never change) their
    running statistics."""
    stages = encoder_stages(net.encoder)
    cut = len(stages) - n_trainable
    frozen: list[nn.Module] = [m for stage in stages[:cut] for m in stage]
    BaseFinetuning.make_trainable([m for stage in stages[cut:] for m in stage])
    if n_trainable == 0:
        frozen = [net.encoder]
    BaseFinetuning.freeze(frozen, train_bn=False)
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
