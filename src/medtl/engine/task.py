"""One LightningModule for segmentation | classification | multitask (the science).

Loss: ``seg_weight * seg_loss + cls_weight * cls_loss`` for multitask; each part and the
total are logged. Validation metrics: per-image Dice/IoU (empty-mask rule from
``train.empty_mask``), accuracy, macro-F1 and AUROC; ``val_score`` is the monitored value
(Dice, macro-F1, or their mean for multitask, unless ``train.monitor`` names a metric).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassF1Score

from medtl.config import Config
from medtl.engine.losses import SEG_LOSSES, make_cls_loss
from medtl.engine.metrics import (
    classification_metric_collection,
    dice_per_image_torch,
    iou_per_image_torch,
)
from medtl.models.build import Net
from medtl.models.strategy import apply_strategy, describe_groups, param_groups, trainable_stages

log = logging.getLogger("medtl")


OPTIMIZERS: dict[str, Any] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": lambda groups: torch.optim.RMSprop(groups, momentum=0.9),
    "sgd": lambda groups: torch.optim.SGD(groups, momentum=0.9, nesterov=True),
}


def monitor_key(cfg: Config) -> str:
    """The validation metric that picks the best checkpoint and drives early stopping."""
    if cfg.train.monitor != "auto":
        return cfg.train.monitor
    return "val_score"


class MedtlTask(L.LightningModule):
    """Training/validation steps, losses, metrics and optimisers for one :class:`Net`."""

    def __init__(
        self, net: Net, cfg: Config, n_classes: int = 0, class_weights: torch.Tensor | None = None
    ):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.memory_format = "contiguous"  # of the inputs; see medtl.engine.layout
        self.task = cfg.task
        self.n_classes = n_classes
        self.has_seg = cfg.task in ("segmentation", "multitask")
        self.has_cls = cfg.task in ("classification", "multitask")
        self.seg_loss = SEG_LOSSES[cfg.train.loss]
        self.cls_loss = (
            make_cls_loss(cfg.train.cls_loss, class_weights, cfg.train.label_smoothing)
            if self.has_cls
            else None
        )
        self.val_dice = MeanMetric(nan_strategy="ignore")
        self.val_iou = MeanMetric(nan_strategy="ignore")
        loss_parts = (
            ["loss"]
            + (["seg_loss"] if self.has_seg else [])
            + (["cls_loss"] if self.has_cls else [])
        )
        self.val_losses = torch.nn.ModuleDict({k: MeanMetric() for k in loss_parts})
        if self.has_cls:
            self.val_cls = classification_metric_collection(n_classes, prefix="val_")
            self.val_f1 = MulticlassF1Score(num_classes=n_classes, average="macro")
        self.current_stages = -1
        self._apply_epoch_strategy(0)

    # ---------------------------------------------------------------- strategy
    def _apply_epoch_strategy(self, epoch: int) -> None:
        m = self.cfg.model
        n = trainable_stages(m.strategy, m.unfreeze_stages, epoch, m.warmup_epochs)
        if n != self.current_stages:
            if self.current_stages >= 0:
                log.info(
                    f"epoch {epoch}: strategy {m.strategy} unfreezes the last {n} encoder stages"
                )
            apply_strategy(self.net, n)
            self.current_stages = n

    def on_train_epoch_start(self) -> None:
        # augmentation and dropout randomness depend only on (seed, epoch): a resumed run
        # repeats exactly what an uninterrupted one does
        torch.manual_seed(self.cfg.train.seed * 100_003 + self.current_epoch)
        self._apply_epoch_strategy(self.current_epoch)
        self.log(
            "encoder_trainable_stages", float(self.current_stages), on_epoch=True, on_step=False
        )

    # ---------------------------------------------------------------- losses
    def forward(self, x: torch.Tensor | tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Images -> the whole net; a tuple of cached encoder features -> decoder and heads."""
        if isinstance(x, (tuple, list)):
            return self.net.heads(list(x))
        if getattr(self, "memory_format", "contiguous") == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def compute_loss(
        self, out: dict[str, torch.Tensor], mask: torch.Tensor, label: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        if self.has_seg:
            parts["seg_loss"] = self.seg_loss(out["seg"], mask)
        if self.has_cls:
            parts["cls_loss"] = self.cls_loss(out["cls"], label)
        # the weights apply to multitask only; a single task's loss is used as is
        m = self.cfg.model
        weights = {"seg_loss": m.seg_weight, "cls_loss": m.cls_weight} if len(parts) == 2 else {}
        parts["loss"] = sum(weights.get(k, 1.0) * v for k, v in parts.items())
        return parts

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, mask, label, _ = batch
        parts = self.compute_loss(self(x), mask, label)
        if not torch.isfinite(parts["loss"]):
            raise FloatingPointError(
                f"loss became {parts['loss'].item()} at epoch {self.current_epoch}, step {batch_idx}; "
                "lower train.lr or check the data (last good checkpoint kept)"
            )
        bs = mask.shape[0]
        for k, v in parts.items():
            self.log(
                f"train_{k}", v, on_step=False, on_epoch=True, batch_size=bs, prog_bar=(k == "loss")
            )
        return parts["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, mask, label, row = batch
        out = self(x)
        keep = row >= 0  # distributed-evaluation padding is forwarded but not counted
        if not bool(keep.any()):
            return
        out = {k: v[keep] for k, v in out.items()}
        mask, label = mask[keep], label[keep]
        n = int(keep.sum())
        for k, v in self.compute_loss(out, mask, label).items():
            self.val_losses[k].update(v.detach(), weight=n)
        if self.has_seg:
            rule = self.cfg.train.empty_mask
            self.val_dice.update(dice_per_image_torch(out["seg"], mask, empty=rule))
            self.val_iou.update(iou_per_image_torch(out["seg"], mask, empty=rule))
        if self.has_cls:
            probs = torch.softmax(out["cls"].float(), 1)
            self.val_cls.update(probs, label)
            self.val_f1.update(probs, label)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics states are summed over ranks in compute(): exact under DDP
        metrics = {f"val_{k}": m.compute() for k, m in self.val_losses.items()}
        for m in self.val_losses.values():
            m.reset()
        scores = []
        if self.has_seg:
            metrics["val_dice"] = self.val_dice.compute()
            metrics["val_iou"] = self.val_iou.compute()
            self.val_dice.reset()
            self.val_iou.reset()
            scores.append(metrics["val_dice"])
        if self.has_cls:
            metrics.update(self.val_cls.compute())
            metrics["val_macro_f1"] = self.val_f1.compute()
            self.val_cls.reset()
            self.val_f1.reset()
            scores.append(metrics["val_macro_f1"])
        metrics["val_score"] = torch.stack(
            [torch.as_tensor(s, dtype=torch.float32) for s in scores]
        ).mean()
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k in ("val_dice", "val_macro_f1"), sync_dist=False)

    # ---------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        t, m = self.cfg.train, self.cfg.model
        groups = param_groups(self.net, t.lr, m.encoder_lr_mult, t.weight_decay)
        for line in describe_groups(self.net, groups):
            log.info(line)
        opt = OPTIMIZERS[t.optimizer](groups)
        if t.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, t.epochs))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if t.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=0.5, patience=3
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"},
            }
        return opt
