"""``train.ema_epochs``: an exponential moving average (EMA) of the weights, validated and kept.

Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` keeps the average beside
the model, swaps it in for every validation epoch (so ``val_score``, early stopping and the
best checkpoint judge the averaged weights) and writes it as the checkpoint's
``state_dict`` (the weights being trained go to ``current_model_state``, for resuming).
The decay follows from the epoch length: ``1 - 1 / (ema_epochs x optimiser steps per
epoch)``, so the average spans about the same share of training whatever the data set's
size and the batch size. Buffers (BatchNorm statistics) are averaged the same way.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

log = logging.getLogger("medtl")


def ema_decay(ema_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay that averages over about ``ema_epochs`` epochs of
    ``steps_per_epoch`` optimiser steps (0.0 when that is under one step).

    >>> round(ema_decay(1.0, 100), 4)
    0.99
    """
    steps = ema_epochs * max(1, steps_per_epoch)
    return 0.0 if steps <= 1 else 1.0 - 1.0 / steps


class EpochEMA(WeightAveraging):
    """EMA of the weights over about ``ema_epochs`` epochs (module docstring)."""

    def __init__(self, ema_epochs: float) -> None:
        super().__init__(use_buffers=True, avg_fn=self._average)
        self.ema_epochs = float(ema_epochs)
        self.decay = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = trainer.num_training_batches
        steps = batches if math.isfinite(batches) else 1
        steps = max(1, int(steps) // max(1, trainer.accumulate_grad_batches))
        self.decay = ema_decay(self.ema_epochs, steps)
        log.info(
            f"weights averaged (EMA) over ~{self.ema_epochs:g} epochs: decay {self.decay:.5f} "
            f"per step ({steps} steps an epoch); validation and checkpoints use the average"
        )

    def _average(
        self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor
    ) -> torch.Tensor:
        return averaged + (current - averaged) * (1.0 - self.decay)
