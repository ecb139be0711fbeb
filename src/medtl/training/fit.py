"""``train(cfg)``: data -> splits -> model -> Lightning Trainer -> run folder (the engineering)."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from medtl.configuration.limits import check_training_memory
from medtl.configuration.loading import Config, parse_channels
from medtl.data.dataset import CachedDataset, class_counts
from medtl.data.leaks import apply_policy, write_leaks
from medtl.data.masks.scheme import MaskScheme
from medtl.data.pipeline import PreparedData, prepare
from medtl.data.readers.io import pixel_cap
from medtl.data.splits import load_splits, make_splits, save_splits
from medtl.models.build import build_model, check_image_size
from medtl.runs.checkpoints import resume_checkpoint
from medtl.runs.facts import RunFacts, best_epoch, data_facts
from medtl.runs.folder import (
    RUN_DIR_ENV,
    attach_log,
    process_rank,
    save_bundle,
    shared_run_dir,
    write_config,
    write_env,
)
from medtl.runs.model_summary import write_model_summary
from medtl.runtime.compile import compile_net
from medtl.runtime.cpu import threads_for
from medtl.runtime.device import device_facts, resolve_accelerator, resolve_precision, tune_loader
from medtl.runtime.memory_format import choose_layout
from medtl.runtime.quiet import quiet_lightning
from medtl.training.budget import record_budget, time_budget
from medtl.training.callbacks import AtomicCheckpointIO, EpochMetricsCSV, run_callbacks
from medtl.training.features import features_released, train_val_loaders
from medtl.training.interrupts import fit_endings
from medtl.training.label_weights import training_label_weights
from medtl.training.loggers import check_logger, log_run_artifacts, make_logger
from medtl.training.losses import balanced_class_weights
from medtl.training.resume import resume_target
from medtl.training.task import MedtlTask, monitor_key
from medtl.training.warm_start import warm_start
from medtl.utils.files import remove_orphan_temps
from medtl.utils.locks import folder_lock

log = logging.getLogger("medtl")

#: what train.log and run.json say of a run without validation images (data.val_fraction=0)
FINAL_NOTE = (
    "final model: no validation images (data.val_fraction=0 or too few images), so no "
    "early stopping and model.pt is the last epoch's; the val_* numbers per epoch are on "
    "the training images"
)


def train(
    cfg: Config,
    progress: bool = True,
    splits: dict[str, list[int]] | None = None,
    scheme: MaskScheme | None = None,
) -> Path:
    """Train one model as configured; returns the run folder (see docs/design.md 'The run folder').

    ``splits`` fixes the split (indices into the discovered samples, e.g. one k-fold of
    :func:`medtl.data.splits.kfold`); otherwise a seeded split is made (or, on resume,
    the run's splits.json is reused). ``scheme`` is the data's mask scheme when the caller
    decided it already (a comparison decides it once for every cell and fold): no mask file
    is scanned again, and the decision is written into ``cfg.data`` as a scan's would be (so
    config.yaml records it). To resume, pass :func:`medtl.training.resume.resume_config` (the run's
    own config with ``train.resume`` set).

    Everything that can fail on bad input (data, layout, model build, pretrained weights)
    is checked before the run folder is created, so a failure leaves nothing behind.
    The call changes no process-wide state: Lightning's warnings, ``train.threads``, the
    random generators and medtl's log level are the caller's again afterwards (the
    allocator tuning is the CLI's or :func:`medtl.configure_cpu`'s).
    """
    resume_run = resume_target(cfg)
    check_logger(cfg)
    check_image_size(cfg.task, cfg.model.arch, cfg.data.image_size)
    resolve_accelerator(cfg.train.accelerator)  # a GPU asked for and absent: stop here
    time_budget(cfg.train.max_time)  # a budget that does not parse: stop here
    check_training_memory(cfg)  # an image size no batch of which fits in RAM: one line
    if cfg.data.root is not None:  # absolute, so the run can be evaluated from anywhere
        cfg.data.root = str(Path(cfg.data.root).resolve())
    with quiet_lightning(), threads_for(cfg), _random_state_kept(), pixel_cap(cfg.data.max_pixels):
        return _train(cfg, resume_run, progress, splits, scheme)


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Training seeds every generator (Lightning's ``seed_everything``); give the caller
    back the states and seed variables it had."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train(
    cfg: Config,
    resume_run: Path | None,
    progress: bool,
    splits: dict[str, list[int]] | None,
    scheme: MaskScheme | None = None,
) -> Path:
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = prepare(cfg, scheme=scheme)
    if scheme is not None and scheme.values:  # config.yaml records the decision
        for key, value in scheme.config_values().items():
            setattr(cfg.data, key, value)
    splits = _choose_splits(cfg, data, resume_run, splits)
    task, weights_info = build_task(cfg, data, splits)
    with _run_folder(cfg, resume_run) as (run, owner):
        facts = RunFacts(run, write=owner)
        # a refused resume (no intact or an unsafe checkpoint) raises here, before run.json
        # says "running": a finished run stays finished
        resume_from = resume_checkpoint(run) if cfg.train.resume else None
        try:
            _record_start(cfg, run, owner, resume_run is None, data, splits, weights_info)
            facts.start(**_start_facts(cfg, data, splits, weights_info))
            return _fit(cfg, run, task, data, splits, progress, facts, resume_from)
        except BaseException as exc:
            facts.fail(exc)
            raise


def _choose_splits(
    cfg: Config, data: PreparedData, resume_run: Path | None, splits: dict[str, list[int]] | None
) -> dict[str, list[int]]:
    """The resumed run's splits.json, the given split, or a new seeded one."""
    samples = data.dataset.samples
    if resume_run is not None:
        return load_splits(resume_run / "splits.json", samples)
    if splits is None:
        made = make_splits(samples, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
        return apply_policy(cfg.data.premade_split, samples, made, data.cache.hashes)  # leaks
    return splits


def build_task(
    cfg: Config, data: PreparedData, splits: dict[str, list[int]]
) -> tuple[MedtlTask, str]:
    """The network (pretrained weights loaded) in its LightningModule, and the weights'
    description; class weights come from the training split when ``train.class_weights=auto``."""
    n_classes = len(data.classes) if cfg.task != "segmentation" else 0
    scheme = data.dataset.mask_scheme or MaskScheme("binary")  # decided once, by prepare
    net, weights_info = build_model(
        cfg.task,
        cfg.model.arch,
        cfg.model.encoder,
        cfg.model.weights,
        n_classes=n_classes,
        in_channels=cfg.model.in_channels,
        dropout=cfg.model.dropout,
        normalize=cfg.model.normalize,
        decoder_channels=parse_channels(cfg.model.decoder_channels),
        seg_classes=scheme.channels,  # several mask labels: C + 1 softmax channels
    )
    if cfg.model.init:  # the whole network of an earlier run
        weights_info = f"{weights_info}, then {warm_start(net, cfg.model.init)}"
    class_weights = None
    if cfg.task != "segmentation" and cfg.train.class_weights == "auto":
        counts = class_counts([data.labels[i] for i in splits["train"]], n_classes)
        class_weights = balanced_class_weights(torch.as_tensor(counts))
    label_weights = training_label_weights(cfg, scheme, data.cache, splits["train"])
    task = MedtlTask(net, cfg, n_classes, class_weights, label_weights, scheme)
    return task, weights_info


@contextmanager
def _run_folder(cfg: Config, resume_run: Path | None) -> Iterator[tuple[Path, bool]]:
    """The run folder and whether this process owns it (rank 0), locked by the owner (a
    second process on it stops with a one-line error), its orphan temp files removed,
    train.log attached and the folder exported to the processes Lightning launches, for
    the block only."""
    if resume_run is not None:
        run, owner = resume_run, process_rank() == 0
    else:
        run, owner = shared_run_dir(cfg)
    with ExitStack() as stack:
        if owner:
            stack.enter_context(folder_lock(run, "training"))
            remove_orphan_temps(run, run / "checkpoints")
        with _logged_and_exported(run, owner):
            yield run, owner


@contextmanager
def _logged_and_exported(run: Path, owner: bool) -> Iterator[None]:
    exported = owner and RUN_DIR_ENV not in os.environ
    if exported:  # processes that Lightning launches for DDP find the run here
        os.environ[RUN_DIR_ENV] = str(run)
    level = log.level
    handler = attach_log(run) if owner else None
    if not owner:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        if exported:
            os.environ.pop(RUN_DIR_ENV, None)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(level)


def _record_start(
    cfg: Config,
    run: Path,
    owner: bool,
    new: bool,
    data: PreparedData,
    splits: dict[str, list[int]],
    weights_info: str,
) -> None:
    """The owner's config.yaml and splits.json (new runs) and env.json; the start of train.log."""
    if owner and new:
        write_config(run, cfg)
        save_splits(
            run / "splits.json",
            data.dataset.samples,
            splits,
            {"seed": cfg.data.seed, "layout": data.dataset.layout, "classes": data.classes},
        )
        write_leaks(run, data.dataset.samples, splits, data.cache.hashes)
    if owner:
        write_env(run, cfg)
    log.info(data.dataset.summary())
    if data.dataset.mask_scheme is not None:  # what the masks mean (medtl.data.masks.scheme)
        log.info(f"masks: {data.dataset.mask_scheme.describe()}")
    log.info("split: " + ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    log.info(
        f"model: task={cfg.task} arch={cfg.model.arch} encoder={cfg.model.encoder} weights: {weights_info}"
    )
    world = cfg.train.devices * cfg.train.num_nodes
    if world > 1:
        log.info(
            f"distributed: {world} processes x batch {cfg.train.batch_size} = effective batch "
            f"{world * cfg.train.batch_size}; train.lr={cfg.train.lr} is used as given (not scaled)"
        )
    dev = device_facts(cfg.train.accelerator, cfg.train.precision)
    log.info(
        f"device: {dev['accelerator']} ({dev['name']}; train.accelerator={dev['asked']}), "
        f"precision {dev['precision']}"
    )


def _start_facts(
    cfg: Config, data: PreparedData, splits: dict[str, list[int]], weights_info: str
) -> dict[str, Any]:
    """The run.json facts known before the first epoch."""
    m = cfg.model
    return {
        "data": data_facts(cfg, data),
        "split": {k: len(v) for k, v in splits.items()},
        "model": {
            "task": cfg.task,
            "arch": m.arch,
            "encoder": m.encoder,
            "strategy": m.strategy,
            "weights": weights_info,
        },
        "monitor": monitor_key(cfg),
        "device": device_facts(cfg.train.accelerator, cfg.train.precision),
        "planned_seconds": cfg.train.planned_seconds,  # medtl plan's prediction, if any
    }


def _trainer(cfg: Config, run: Path, callbacks: list[L.Callback], progress: bool) -> L.Trainer:
    t = cfg.train
    accelerator = resolve_accelerator(t.accelerator)
    return L.Trainer(
        max_epochs=t.epochs,
        max_time=time_budget(t.max_time),  # stops after the step that crosses it
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, accelerator),  # type: ignore[arg-type]
        deterministic=t.deterministic or None,
        callbacks=callbacks,
        logger=make_logger(cfg, run),
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=run,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        limit_train_batches=t.max_steps_per_epoch or 1.0,
        use_distributed_sampler=False,  # medtl's samplers shard exactly (data.samplers)
        log_every_n_steps=1,
    )


def _fit(
    cfg: Config,
    run: Path,
    task: MedtlTask,
    data: PreparedData,
    splits: dict[str, list[int]],
    progress: bool,
    facts: RunFacts,
    resume_from: Path | None = None,
) -> Path:
    final = not splits["val"]  # the final model: every image trains, the last epoch is kept
    if final:
        log.info(FINAL_NOTE + (" (train.patience ignored)" if cfg.train.patience > 0 else ""))
        facts.update(final_model=FINAL_NOTE)
    ckpt, metrics_csv, callbacks = run_callbacks(cfg, run, facts, final)
    if cfg.train.resume and resume_from is None:
        log.info(f"no {run / 'checkpoints' / 'last.ckpt'}; training {run} from the start")
    if resume_from:
        metrics_csv.load_existing()
    trainer = _trainer(cfg, run, callbacks, progress)
    val_idx = splits["val"] or splits["train"]
    train_loader, val_loader = train_val_loaders(cfg, task, data, splits["train"], val_idx, run)
    accelerator = resolve_accelerator(cfg.train.accelerator)  # CUDA: pinned memory, workers
    train_loader, val_loader = (tune_loader(dl, accelerator) for dl in (train_loader, val_loader))
    layout, speeds = choose_layout(cfg, task, train_loader)
    facts.update(memory_layout={"chosen": layout, "probe_img_per_s": speeds})
    write_model_summary(run, task, facts)  # rank 0: RUN/model_summary.txt, run.json counts
    compile_net(cfg, task, on_features=not isinstance(train_loader.dataset, CachedDataset))
    t0 = time.perf_counter()
    # NaN guard and Ctrl-C as medtl's errors; cached features on disk deleted afterwards
    with fit_endings(trainer, run), features_released(train_loader, val_loader):
        # weights-only: a checkpoint cannot run code (engine.checkpoints)
        trainer.fit(task, train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    elapsed = time.perf_counter() - t0
    record_budget(trainer, cfg, facts, elapsed)  # train.max_time, medtl plan's prediction
    if trainer.is_global_zero:
        io = trainer.strategy.checkpoint_io
        # the best checkpoint was written after the last optimiser step: the weights in
        # memory are its weights, so model.pt needs no reload of the 172 MB file
        known = isinstance(io, AtomicCheckpointIO) and ckpt.best_model_path
        step = io.step_of(ckpt.best_model_path) if known else None
        current = step is not None and step == trainer.global_step
        best = None if final else ckpt
        _finish(cfg, run, task, data, best, metrics_csv, facts, elapsed, in_memory=current)
    return run


def _finish(
    cfg: Config,
    run: Path,
    task: MedtlTask,
    data: PreparedData,
    ckpt: ModelCheckpoint | None,
    metrics_csv: EpochMetricsCSV,
    facts: RunFacts,
    elapsed: float,
    in_memory: bool = False,
) -> None:
    """The best checkpoint's weights as ``model.pt`` (``ckpt`` None: the last epoch's, a
    final model; ``in_memory``: the network holds them already); the result in train.log
    and run.json."""
    if ckpt is None:
        save_bundle(run, task.net, cfg, data.classes)
        log_run_artifacts(run, ["model.pt", "model_summary.txt"])
        log.info(f"finished in {elapsed:.1f}s; model.pt = the last epoch's weights")
        facts.finish(len(metrics_csv.rows) - 1 if metrics_csv.rows else None, None, elapsed)
        return
    best = ckpt.best_model_path
    if best and not in_memory:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    save_bundle(run, task.net, cfg, data.classes)
    log_run_artifacts(run, ["model.pt", "model_summary.txt"])  # train.logger=mlflow
    score = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
    monitor = monitor_key(cfg)
    log.info(
        f"finished in {elapsed:.1f}s; best {monitor}={score if score is not None else float('nan'):.4f}"
    )
    facts.finish(best_epoch(metrics_csv.rows, monitor, score), score, elapsed)
