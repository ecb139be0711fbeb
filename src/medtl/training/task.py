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
from torchmetrics import MeanMetric, Metric
from torchmetrics.utilities import dim_zero_cat

from medtl.configuration import names
from medtl.configuration.loading import Config
from medtl.data.masks.scheme import MaskScheme
from medtl.metrics import classification_scores
from medtl.models.build import Net
from medtl.models.strategy import apply_strategy, describe_groups, param_groups, trainable_stages
from medtl.training.losses import make_cls_loss, seg_loss_for
from medtl.training.metrics import (
    LabelScores,
    classification_metric_collection,
    dice_per_image_torch,
    iou_per_image_torch,
    label_dice_iou_torch,
)

log = logging.getLogger("medtl")


def fused(groups: list[dict[str, Any]]) -> dict[str, bool]:
    """``fused=True`` when every parameter is on a CPU or CUDA device: PyTorch's fused
    Adam/AdamW/SGD update all parameters in one vectorised kernel instead of a Python loop
    over tensors, several times faster for a ResNet18-UNet's 14.3M parameters on one
    thread; Adam and SGD results identical, AdamW within 1e-8)."""
    devices = {p.device.type for g in groups for p in g["params"]}
    return {"fused": True} if devices and devices <= {"cpu", "cuda"} else {}


#: ``train.optimizer`` -> ``(param groups, momentum) -> optimiser``; the groups carry lr and
#: ``train.weight_decay`` (which applies to plain Adam too, as L2 added to the gradient).
OPTIMIZERS: dict[str, Any] = {
    "adam": lambda groups, momentum: torch.optim.Adam(groups, **fused(groups)),
    "adamw": lambda groups, momentum: torch.optim.AdamW(groups, **fused(groups)),
    "rmsprop": lambda groups, momentum: torch.optim.RMSprop(groups, momentum=momentum),
    "sgd": lambda groups, momentum: torch.optim.SGD(
        groups, momentum=momentum, nesterov=momentum > 0, **fused(groups)
    ),
}
names.check_registry("train.optimizer", names.OPTIMIZERS, OPTIMIZERS)


def _cosine(opt: torch.optim.Optimizer, t: Any) -> dict[str, Any]:
    """Cosine annealing from ``train.lr`` to ``train.min_lr`` over ``train.epochs``."""
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, t.epochs), eta_min=t.min_lr
    )
    return {"scheduler": sched, "interval": "epoch"}


def _plateau(opt: torch.optim.Optimizer, t: Any) -> dict[str, Any]:
    """lr x ``train.plateau_factor`` after ``train.plateau_patience`` epochs without a lower
    ``val_loss``, down to ``train.min_lr``."""
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=t.plateau_factor, patience=t.plateau_patience, min_lr=t.min_lr
    )
    return {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}


#: ``train.scheduler`` -> ``(optimiser, cfg.train) -> Lightning's lr_scheduler dict`` (None:
#: a constant lr)
SCHEDULERS: dict[str, Any] = {"none": lambda opt, t: None, "cosine": _cosine, "plateau": _plateau}
names.check_registry("train.scheduler", names.SCHEDULERS, SCHEDULERS)


class ValClassification(Metric):
    """Validation ``val_acc``, ``val_macro_f1`` and ``val_auroc`` by
    :func:`medtl.metrics.classification_scores`, the evaluation's definitions: macro-F1
    over every class (a class absent from truth and prediction counts 0, where torchmetrics
    drops it), AUROC averaged over the classes present (torchmetrics scores an absent one
    0). Probabilities and labels are ``cat`` states gathered over ranks: exact under DDP
    (the scores do not depend on the order)."""

    full_state_update = False

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.classes = [str(i) for i in range(n_classes)]
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.probs.append(probs.detach().float())
        self.labels.append(labels.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        probs = dim_zero_cat(self.probs).cpu().double()
        values = dict.fromkeys(("val_acc", "val_macro_f1", "val_auroc"), float("nan"))
        if probs.numel() and bool(torch.isfinite(probs).all()):  # NaN outputs: no score
            y = dim_zero_cat(self.labels).cpu().numpy()
            known = y >= 0  # -1: an image without a known class
            s = classification_scores(y[known], probs.numpy()[known], self.classes)
            values = {
                "val_acc": s["accuracy"],
                "val_macro_f1": s["macro_avg"]["f1"],
                "val_auroc": s["auroc_macro"],
            }
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}


def monitor_key(cfg: Config) -> str:
    """The validation metric that picks the best checkpoint and drives early stopping."""
    if cfg.train.monitor != "auto":
        return cfg.train.monitor
    return "val_score"


class MedtlTask(L.LightningModule):
    """Training/validation steps, losses, metrics and optimisers for one :class:`Net`.

    ``scheme`` is the data's decided mask scheme (:class:`MaskScheme`, handed over by
    :func:`medtl.training.fit.build_task`; None: binary): it sets the loss (sigmoid, softmax
    over labels, or one sigmoid per structure) and the per-label validation scores."""

    def __init__(
        self,
        net: Net,
        cfg: Config,
        n_classes: int = 0,
        class_weights: torch.Tensor | None = None,
        label_weights: torch.Tensor | None = None,
        scheme: MaskScheme | None = None,
    ):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.memory_format = "contiguous"  # of the inputs; see medtl.runtime.memory_format
        self.task = cfg.task
        self.n_classes = n_classes
        self.has_seg = cfg.task in ("segmentation", "multitask")
        self.has_cls = cfg.task in ("classification", "multitask")
        scheme = scheme or MaskScheme("binary")  # several mask labels: softmax head, per label
        self.label_names = list(scheme.label_names) if scheme.multi else []
        self.multilabel = scheme.multilabel  # one sigmoid channel per structure
        self.seg_loss = seg_loss_for(
            cfg.train.loss, scheme.channels, label_weights, self.multilabel
        )
        if self.multilabel and label_weights is not None:  # one positive weight per structure
            from medtl.training.label_weights import weighted_structure_loss

            self.seg_loss = weighted_structure_loss(cfg.train.loss, label_weights)
        self.cls_loss = (
            make_cls_loss(cfg.train.cls_loss, class_weights, cfg.train.label_smoothing)
            if self.has_cls
            else None
        )
        if self.has_seg:  # training-side scores of each epoch (the VGG-FCN study's curves)
            self.train_dice = MeanMetric(nan_strategy="ignore")
            self.train_iou = MeanMetric(nan_strategy="ignore")
        if self.has_cls:
            self.train_cls = classification_metric_collection(n_classes, prefix="train_")
        self.val_dice = MeanMetric(nan_strategy="ignore")
        self.val_iou = MeanMetric(nan_strategy="ignore")
        if self.label_names:
            self.val_labels = LabelScores(self.label_names, cfg.train.empty_mask, self.multilabel)
        loss_parts = (
            ["loss"]
            + (["seg_loss"] if self.has_seg else [])
            + (["cls_loss"] if self.has_cls else [])
        )
        self.val_losses = torch.nn.ModuleDict({k: MeanMetric() for k in loss_parts})
        if self.has_cls:
            self.val_cls = ValClassification(n_classes)
        self.current_stages = -1
        self.apply_epoch_strategy(0)

    # ---------------------------------------------------------------- strategy
    def apply_epoch_strategy(self, epoch: int) -> None:
        """Freeze the encoder stages ``model.strategy`` keeps frozen at ``epoch`` (at
        construction for epoch 0, then by :class:`medtl.training.callbacks.StrategyFinetuning`
        at each epoch's start, before this module's own epoch-start hook)."""
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
        m = self.cfg.model
        if m.strategy == "two_stage" and 0 < m.warmup_epochs == self.current_epoch:
            # exactly at the unfreeze epoch: a run resumed later has the scaled lr in its
            # optimiser state already
            self._scale_lrs(m.unfreeze_lr_mult)
        self.log(
            "encoder_trainable_stages", float(self.current_stages), on_epoch=True, on_step=False
        )

    def _scale_lrs(self, mult: float) -> None:
        """Every group's lr (and a cosine schedule's base) x ``mult`` (model.unfreeze_lr_mult)."""
        if mult == 1.0:
            return
        opts = self.optimizers()
        for opt in opts if isinstance(opts, list) else [opts]:
            for group in opt.param_groups:
                group["lr"] *= mult
        for config in self.trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [lr * mult for lr in config.scheduler.base_lrs]
        log.info(f"epoch {self.current_epoch}: every lr x {mult} (model.unfreeze_lr_mult)")

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

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Lightning's step, then the gradients freed: Lightning zeroes them inside the next
        step's closure, so they would stay allocated through the next forward (one
        network's worth of memory more at the activation peak; medtl never accumulates
        gradients over steps)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, mask, label, _ = batch
        out = self(x)
        parts = self.compute_loss(out, mask, label)
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
        self._train_scores(out, mask, label)
        return parts["loss"]

    @torch.no_grad()
    def _train_scores(self, out: dict[str, torch.Tensor], mask: torch.Tensor, label: torch.Tensor):
        """train_dice / train_iou and train_acc / train_auroc of the epoch (outputs in train mode)."""
        epoch = {"on_step": False, "on_epoch": True, "batch_size": mask.shape[0]}
        if self.has_seg:
            rule = self.cfg.train.empty_mask
            if self.label_names:  # per image: the mean over its labels
                dice, iou = label_dice_iou_torch(out["seg"], mask, rule, self.multilabel)
                self.train_dice.update(torch.nanmean(dice, 1))
                self.train_iou.update(torch.nanmean(iou, 1))
            else:
                self.train_dice.update(dice_per_image_torch(out["seg"], mask, empty=rule))
                self.train_iou.update(iou_per_image_torch(out["seg"], mask, empty=rule))
            self.log("train_dice", self.train_dice, **epoch)
            self.log("train_iou", self.train_iou, **epoch)
        if self.has_cls:
            self.train_cls.update(torch.softmax(out["cls"].float(), 1), label)
            self.log_dict(self.train_cls, **epoch)

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
        if self.has_seg and self.label_names:
            self.val_labels.update(out["seg"], mask)
        elif self.has_seg:
            rule = self.cfg.train.empty_mask
            self.val_dice.update(dice_per_image_torch(out["seg"], mask, empty=rule))
            self.val_iou.update(iou_per_image_torch(out["seg"], mask, empty=rule))
        if self.has_cls:
            probs = torch.softmax(out["cls"].float(), 1)
            self.val_cls.update(probs, label)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics states are summed over ranks in compute(): exact under DDP
        metrics = {f"val_{k}": m.compute() for k, m in self.val_losses.items()}
        for m in self.val_losses.values():
            m.reset()
        scores = []
        if self.has_seg and self.label_names:  # val_dice: the mean over foreground labels
            metrics.update({f"val_{k}": v for k, v in self.val_labels.compute().items()})
            self.val_labels.reset()
            scores.append(metrics["val_dice"])
        elif self.has_seg:
            metrics["val_dice"] = self.val_dice.compute()
            metrics["val_iou"] = self.val_iou.compute()
            self.val_dice.reset()
            self.val_iou.reset()
            scores.append(metrics["val_dice"])
        if self.has_cls:
            metrics.update(self.val_cls.compute())
            self.val_cls.reset()
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
        opt = OPTIMIZERS[t.optimizer](groups, t.momentum)
        sched = SCHEDULERS[t.scheduler](opt, t)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}
