"""Engineering pieces around the loop: per-epoch metrics.csv and run.json, atomic checkpoints,
and ``model.strategy``'s freeze/unfreeze schedule as Lightning's fine-tuning callback."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.optim import Optimizer

from medtl.configuration import names
from medtl.models.strategy import STRATEGIES, trainable_stages
from medtl.runs.facts import RunFacts
from medtl.training.averaging import EpochEMA
from medtl.training.task import monitor_key
from medtl.utils.files import atomic_torch_save, atomic_write, atomic_write_text, csv_text, read_csv

log = logging.getLogger("medtl")
names.check_registry("model.strategy", names.STRATEGIES, STRATEGIES)


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill never leaves a corrupt .ckpt.

    After an improving epoch ``best.ckpt`` and ``last.ckpt`` hold the same training moment
    (epoch and optimiser step): the second is then a hard link of the first instead of a
    second full write (172 MB for a ResNet18-UNet with its Adam state). The two checkpoints
    differ only in the "last" callback's record of its own file name, which is empty in
    epoch 0 and the same path after, and which it sets again on its next save. Renaming a
    later checkpoint onto either name breaks the link, so neither ever changes the other.
    Where hard links are not supported, the checkpoint is written in full."""

    def __init__(self) -> None:
        super().__init__()
        # each file this object wrote -> (epoch, global_step) and the file's identity
        self._written: dict[Path, tuple[tuple[Any, Any], tuple[int, int, int]]] = {}
        self._last: Path | None = None  # the file written last

    def _moment_of(self, path: Path) -> tuple[Any, Any] | None:
        """(epoch, global_step) of the checkpoint this object wrote to ``path``, while that
        file is still the one it wrote; None otherwise."""
        entry = self._written.get(path)
        try:
            return entry[0] if entry and _identity(path) == entry[1] else None
        except OSError:
            return None

    def step_of(self, path: Any) -> Any:
        """The optimiser step (``global_step``) of the checkpoint this object last wrote to
        ``path``, while that file is still the one it wrote; None otherwise."""
        moment = self._moment_of(Path(path))
        return None if moment is None else moment[1]

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        moment = (checkpoint.get("epoch"), checkpoint.get("global_step"))
        if not self._link_last(moment, path):
            atomic_torch_save(checkpoint, path)
        self._written[path] = (moment, _identity(path))
        self._last = path

    def _link_last(self, moment: tuple[Any, Any], path: Path) -> bool:
        """Hard-link the checkpoint written last onto ``path`` if it is of ``moment``, in
        the same folder and still the file this object wrote; False when it did not."""
        source = self._last
        if source is None or source == path or source.parent != path.parent:
            return False
        if self._moment_of(source) != moment:
            return False

        def link(tmp: Path) -> None:
            tmp.unlink()
            os.link(source, tmp)

        try:
            atomic_write(path, link)
        except OSError:
            return False
        return True


class StrategyFinetuning(BaseFinetuning):
    """``model.strategy``'s schedule (:func:`medtl.models.strategy.trainable_stages`) as
    Lightning's fine-tuning callback: the epoch-0 stages are frozen before training, and at
    each epoch's start the stages of that epoch (``two_stage`` unfreezes the last
    ``model.unfreeze_stages`` at ``model.warmup_epochs``). Stages are frozen and unfrozen in
    place, with every parameter in the optimiser from the start, so the learning rates and
    schedules are those of the two groups of :func:`medtl.models.strategy.param_groups`."""

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        pl_module.apply_epoch_strategy(0)

    def finetune_function(
        self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        pl_module.apply_epoch_strategy(epoch)


class EpochMetricsCSV(L.Callback):
    """Writes ``RUN/metrics.csv`` (one row per epoch, rewritten atomically) and logs each epoch.

    The row is written twice: at validation end, before the epoch's checkpoints are saved
    (Lightning runs checkpoint callbacks last), with every metric of the epoch (the
    training epoch's are final once its last batch is done) and the learning rates; and at
    the epoch's end, when only ``epoch_time_s`` changes. A process killed between the
    checkpoint and the epoch's end resumes after that epoch and keeps the first version,
    the same row an uninterrupted run writes but for its time."""

    def __init__(self, path: Path, steps: StepLossCSV | None = None):
        self.path = Path(path)
        self.steps = steps
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.epoch_t0 = self.t0
        self.epoch_lrs: dict[str, float] = {}

    def load_existing(self) -> None:
        """On resume: keep the rows already written."""
        self.rows = read_csv(self.path)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_t0 = time.perf_counter()

    def _lrs(self, trainer: L.Trainer) -> dict[str, float]:
        return {f"lr_{g.get('name', 'group')}": g["lr"] for g in trainer.optimizers[0].param_groups}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # every rank: a torchmetrics metric gathers across processes when computed
        metrics = _train_epoch_metrics(trainer)
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        row: dict[str, Any] = {
            "epoch": epoch,
            "epoch_time_s": round(time.perf_counter() - self.epoch_t0, 3),
        }
        losses = [
            float(r["loss"])
            for r in (self.steps.rows if self.steps else [])
            if int(r["epoch"]) == epoch
        ]
        if losses and "train_loss" not in metrics:
            metrics["train_loss"] = sum(losses) / len(losses)
        metrics.update((k, v) for k, v in trainer.callback_metrics.items() if k.startswith("val_"))
        row.update((k, round(float(v), 6)) for k, v in sorted(metrics.items()))
        row.update(self._lrs(trainer))
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch] + [row]
        self._write()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # the lr this epoch trained with: schedulers step after this hook, and the task's own
        # epoch-start hook (model.unfreeze_lr_mult) runs after the callbacks' epoch start
        self.epoch_lrs = self._lrs(trainer)
        done = {int(r["epoch"]) for r in self.rows}
        if not trainer.callback_metrics and trainer.current_epoch in done:
            # resumed from a checkpoint taken at this epoch's validation end: the epoch's
            # row was written before the checkpoint and nothing new was measured
            return
        row: dict[str, Any] = {
            "epoch": trainer.current_epoch,
            "epoch_time_s": round(time.perf_counter() - self.epoch_t0, 3),
        }
        for k, v in sorted(trainer.callback_metrics.items()):
            row[k] = round(float(v), 6)
        row.update(self.epoch_lrs)
        self.rows = [r for r in self.rows if int(r["epoch"]) != trainer.current_epoch] + [row]
        if trainer.is_global_zero:
            self._write()
            shown = ", ".join(
                f"{k}={v:.4g}"
                for k, v in row.items()
                if (k == "train_loss" or k.startswith(("val_", "lr_"))) and isinstance(v, float)
            )
            log.info(f"epoch {trainer.current_epoch}: {shown} ({row['epoch_time_s']:.1f}s)")

    def _write(self) -> None:
        atomic_write_text(self.path, csv_text(self.rows))


def _train_epoch_metrics(trainer: L.Trainer) -> dict[str, Any]:
    """The training epoch's values logged per epoch (``train_loss``, ``train_dice``, ...) as
    Lightning reports them at the epoch's end; {} where Lightning keeps them elsewhere (the
    row then has ``train_loss`` as the mean step loss and the validation metrics only).
    Computing them early caches them: the epoch's end reports the same values."""
    results = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "_results", None)
    if results is None or not hasattr(results, "metrics"):
        return {}
    return dict(results.metrics(on_step=False)["callback"])


class StepLossCSV(L.Callback):
    """``RUN/steps.csv``: the loss of every optimisation step (epoch, step, loss), rewritten
    atomically at validation end (before the epoch's checkpoints) and at each epoch's end;
    also sent to the TensorBoard/MLflow logger per step.

    A resumed run keeps every row already in the file up to the step it resumes from (rows
    of later steps, run after the checkpoint and lost with the kill, are replaced by the
    new ones): the rows are read at the first hook this process sees, which on a resume
    is the end of the epoch the checkpoint was taken in, not an epoch start."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.loaded = False
        self.trimmed = False

    def _load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        if self.path.is_file():
            try:
                self.rows = [r for r in read_csv(self.path) if str(r.get("step", "")).isdigit()]
            except (OSError, ValueError) as exc:
                log.warning(f"{self.path}: unreadable ({exc}); earlier steps not kept")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self._load()
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = round(float(loss), 6)
        step = trainer.global_step
        if not self.trimmed:  # steps after the checkpoint resumed from are done again
            self.rows = [r for r in self.rows if int(r["step"]) < step]
            self.trimmed = True
        self.rows.append({"epoch": trainer.current_epoch, "step": step, "loss": value})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"train_step_loss": value}, step=step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and self.loaded:
            atomic_write_text(self.path, csv_text(self.rows))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load()
        if trainer.is_global_zero and not trainer.sanity_checking:
            atomic_write_text(self.path, csv_text(self.rows))


class EpochFacts(L.Callback):
    """Records each finished epoch in ``RUN/run.json``: its seconds (as in metrics.csv) and
    whether encoder stages were unfrozen at it (``stages(epoch)`` = trainable stages)."""

    def __init__(self, facts: RunFacts, metrics: EpochMetricsCSV, stages: Callable[[int], int]):
        self.facts = facts
        self.metrics = metrics
        self.stages = stages

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        row = next((r for r in self.metrics.rows if int(r["epoch"]) == epoch), None)
        if trainer.sanity_checking or row is None or not trainer.is_global_zero:
            return
        unfrozen = epoch > 0 and self.stages(epoch) > self.stages(epoch - 1)
        self.facts.epoch(epoch, float(row["epoch_time_s"]), unfrozen=unfrozen)


def run_callbacks(
    cfg: Any, run: Path, facts: RunFacts, final: bool = False
) -> tuple[ModelCheckpoint, EpochMetricsCSV, list[L.Callback]]:
    """The best and last checkpoints, metrics.csv, run.json epochs and early stopping (not
    for a ``final`` model, which has no validation images to stop on)."""
    t, m = cfg.train, cfg.model
    monitor = monitor_key(cfg)
    mode = "min" if monitor.endswith("loss") else "max"
    ckpt = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=mode,
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )
    # Lightning's save_last only writes when a top-k checkpoint is saved; resume needs the
    # state after every epoch, so "last" is its own checkpoint without a monitor.
    # Saved at validation end like the best one, so both hold the same loop/scheduler state.
    last_ckpt = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="last",
        save_top_k=1,
        monitor=None,
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )
    steps_csv = StepLossCSV(run / "steps.csv")
    metrics_csv = EpochMetricsCSV(run / "metrics.csv", steps_csv)

    def stages(epoch: int) -> int:
        return trainable_stages(m.strategy, m.unfreeze_stages, epoch, m.warmup_epochs)

    # Lightning runs checkpoint callbacks after the others: the CSVs are on disk first
    callbacks: list[L.Callback] = [StrategyFinetuning(), ckpt, last_ckpt, steps_csv, metrics_csv]
    callbacks.append(EpochFacts(facts, metrics_csv, stages))
    if t.ema_epochs > 0:
        callbacks.append(EpochEMA(t.ema_epochs))
    if t.patience > 0 and not final:
        callbacks.append(
            EarlyStopping(
                monitor=monitor, mode=mode, patience=t.patience, check_on_train_epoch_end=False
            )
        )
    return ckpt, metrics_csv, callbacks
