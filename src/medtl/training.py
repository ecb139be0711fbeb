"""``train(cfg)``: data -> splits -> model -> Lightning Trainer -> run folder (the engineering)."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from medtl.config import Config
from medtl.data.dataset import CachedDataset, class_counts
from medtl.data.pipeline import PreparedData, loader_for, make_loader, prepare
from medtl.data.splits import load_splits, make_splits, save_splits
from medtl.engine.callbacks import AtomicCheckpointIO, EpochMetricsCSV
from medtl.engine.cpu import set_threads
from medtl.engine.losses import balanced_class_weights
from medtl.engine.task import MedtlTask, monitor_key
from medtl.errors import MedtlError
from medtl.models.build import build_model
from medtl.runs import (
    RUN_DIR_ENV,
    attach_log,
    process_rank,
    read_config,
    save_bundle,
    shared_run_dir,
    write_config,
    write_env,
)

log = logging.getLogger("medtl")


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*is deprecated.*")
    warnings.filterwarnings(
        "ignore", ".*module\\(s\\) in eval mode.*"
    )  # frozen encoders, on purpose


def resume_config(run: str | Path, overrides: list[str] | None = None) -> Config:
    """The saved config of ``run`` with ``train.resume`` set, plus ``overrides`` (e.g. more
    epochs). ``medtl train train.resume=RUN [key=value ...]`` uses this."""
    from medtl.config import load_config

    saved = read_config(Path(run)).to_dict()
    rest = [o for o in overrides or [] if not o.lstrip("+").startswith("train.resume=")]
    return load_config(base=saved, overrides=[f"train.resume={run}", *rest])


def _resume_target(cfg: Config) -> Path | None:
    if not cfg.train.resume:
        return None
    run = Path(cfg.train.resume)
    if not (run / "config.yaml").is_file():
        raise MedtlError(
            f"train.resume={run}: not a run folder (no config.yaml); give the folder 'medtl train' printed"
        )
    return run


def train(cfg: Config, progress: bool = True, splits: dict[str, list[int]] | None = None) -> Path:
    """Train one model as configured; returns the run folder (see DESIGN.md 'The run folder').

    ``splits`` fixes the split (indices into the discovered samples, e.g. one k-fold of
    :func:`medtl.data.splits.kfold`); otherwise a seeded split is made (or, on resume,
    the run's splits.json is reused). To resume, pass :func:`resume_config` (the run's
    own config with ``train.resume`` set).

    Everything that can fail on bad input (data, layout, model build, pretrained weights)
    is checked before the run folder is created, so a failure leaves nothing behind.
    """
    resume_run = _resume_target(cfg)
    check_logger(cfg)
    if cfg.data.root is not None:  # absolute, so the run can be evaluated from anywhere
        cfg.data.root = str(Path(cfg.data.root).resolve())
    quiet_lightning()
    set_threads(cfg)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = prepare(cfg)
    samples = data.dataset.samples
    if resume_run is not None:
        splits = load_splits(resume_run / "splits.json", samples)
    elif splits is None:
        splits = make_splits(samples, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
    n_classes = len(data.classes) if cfg.task != "segmentation" else 0
    net, weights_info = build_model(
        cfg.task,
        cfg.model.arch,
        cfg.model.encoder,
        cfg.model.weights,
        n_classes=n_classes,
        in_channels=cfg.model.in_channels,
        dropout=cfg.model.dropout,
    )
    class_weights = None
    if cfg.task != "segmentation" and cfg.train.class_weights == "auto":
        counts = class_counts([data.labels[i] for i in splits["train"]], n_classes)
        class_weights = balanced_class_weights(torch.as_tensor(counts))
    task = MedtlTask(net, cfg, n_classes=n_classes, class_weights=class_weights)

    if resume_run is not None:
        run, owner = resume_run, process_rank() == 0
    else:
        run, owner = shared_run_dir(cfg)
    exported = owner and RUN_DIR_ENV not in os.environ
    if exported:  # processes that Lightning launches for DDP find the run here
        os.environ[RUN_DIR_ENV] = str(run)
    handler = attach_log(run) if owner else None
    if not owner:
        log.setLevel(logging.WARNING)
    try:
        if owner and resume_run is None:
            write_config(run, cfg)
            save_splits(
                run / "splits.json",
                samples,
                splits,
                {"seed": cfg.data.seed, "layout": data.dataset.layout, "classes": data.classes},
            )
        if owner:
            write_env(run, cfg)
        log.info(data.dataset.summary())
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
        return _fit(cfg, run, task, data, splits, progress)
    finally:
        if exported:
            os.environ.pop(RUN_DIR_ENV, None)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


_LOGGER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}


def check_logger(cfg: Config) -> None:
    """Fail before anything is written when ``train.logger`` needs a package that is missing."""
    name = cfg.train.logger
    if name == "csv":
        return
    try:
        __import__(name)  # the logger's package imports under the logger's name
    except ImportError:
        raise MedtlError(
            f"train.logger={name} needs the '{name}' package; run 'pip install "
            f"{_LOGGER_PACKAGES[name]}' (or medtl[tracking]) or use train.logger=csv"
        ) from None


def make_logger(cfg: Config, run: Path):
    """``train.logger``: csv (medtl's own metrics.csv only), tensorboard (RUN/tensorboard) or
    mlflow, as a Lightning logger next to metrics.csv; the resolved config is logged as
    flat hyper-parameters (``model.encoder`` ...).

    MLflow logs to ``$MLFLOW_TRACKING_URI`` when set (a server or ``sqlite:///...``),
    otherwise to a local file store ``RUN/mlruns`` (MLflow's file store is in maintenance
    mode; medtl opts in with ``MLFLOW_ALLOW_FILE_STORE=true`` for that local store only).
    """
    if cfg.train.logger == "csv":
        return False
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    if cfg.train.logger == "tensorboard":
        logger = TensorBoardLogger(
            save_dir=str(run), name="tensorboard", version="", default_hp_metric=False
        )
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = f"file:{run / 'mlruns'}"
        logger = MLFlowLogger(experiment_name="medtl", run_name=run.name, tracking_uri=uri)
    logger.log_hyperparams(cfg.to_flat_dict())
    return logger


def _loaders(
    cfg: Config, task: MedtlTask, data: PreparedData, train_idx: list[int], val_idx: list[int]
):
    """Train/val loaders over cached images, or over cached encoder features (frozen)."""
    from medtl.engine.features import cache_dtype, cache_reason, feature_bytes

    reason = cache_reason(cfg)
    if reason is None:
        copies = cfg.data.augment_copies
        need_mb = (
            feature_bytes(task.net, cfg.data.image_size, cache_dtype(cfg))
            * (len(train_idx) * (1 + copies) + len(val_idx))
            / 2**20
        )
        if need_mb > cfg.data.in_memory_limit_mb:
            reason = f"encoder features need {need_mb:.0f} MB > data.in_memory_limit_mb={cfg.data.in_memory_limit_mb}"
    if reason is not None:
        if cfg.model.strategy == "frozen":
            log.info(f"feature cache off: {reason}")
        return (
            make_loader(data, train_idx, cfg, train=True),
            make_loader(data, val_idx, cfg, train=False),
        )
    t0 = time.perf_counter()
    train_loader = feature_loader(cfg, task, data, train_idx, train=True)
    val_loader = feature_loader(cfg, task, data, val_idx, train=False)
    log.info(
        f"feature cache: frozen encoder features of {len(train_loader.dataset)} training items "
        f"({1 + cfg.data.augment_copies} per image) and {len(val_loader.dataset)} validation "
        f"images computed once in {time.perf_counter() - t0:.1f}s, stored as "
        f"{cfg.train.feature_cache_dtype}"
    )
    return train_loader, val_loader


def feature_loader(
    cfg: Config, task: MedtlTask, data: PreparedData, indices: list[int], train: bool
) -> torch.utils.data.DataLoader:
    """A loader over the frozen encoder's features of ``indices``, computed now, once
    (training: ``1 + data.augment_copies`` fixed copies per image)."""
    from medtl.engine.features import FeatureDataset, cache_dtype

    dtype = cache_dtype(cfg)
    if train:
        ds = FeatureDataset(
            task.net,
            data.cache,
            indices,
            data.labels,
            cfg.data.augment,
            cfg.data.augment_copies,
            dtype=dtype,
        )
    else:
        ds = FeatureDataset(task.net, data.cache, indices, data.labels, dtype=dtype)
    return loader_for(ds, cfg, train=train)


def choose_layout(cfg: Config, task: MedtlTask, loader) -> tuple[str, dict[str, float] | None]:
    """``train.memory_format``: as given, or ``auto`` = the faster of a one-step probe in
    each layout (one CPU process, image batches, not deterministic); otherwise contiguous.
    Returns the layout and the probe's img/s (None without a probe)."""
    from medtl.engine.layout import probe_layouts, set_layout

    t = cfg.train
    layout = t.memory_format
    if layout == "auto":
        single_cpu = t.accelerator == "cpu" and t.devices * t.num_nodes == 1
        batch = next(iter(loader)) if single_cpu and not t.deterministic else None
        if batch is None or isinstance(batch[0], (tuple, list)):  # features: decoder only
            layout = "contiguous"
        else:
            layout, speeds = probe_layouts(task, batch)
            log.info(
                "memory format: "
                + layout
                + " (probe, img/s: "
                + ", ".join(f"{k} {v}" for k, v in speeds.items())
                + ")"
            )
            return layout, speeds
    set_layout(task, layout)
    return layout, None


def compile_net(cfg: Config, task: MedtlTask, on_features: bool = False) -> bool:
    """``train.compile=inductor|aot_eager``: ``torch.compile`` the network's forward in place
    (``nn.Module.compile``: parameter names, checkpoints and model.pt stay as without it).
    Off by default: on this project's 2-core CPU inductor made training slower after a
    ~2-minute compile (docs/performance.md); it is for GPUs. Returns whether it compiled."""
    backend = cfg.train.compile
    if backend == "none":
        return False
    if on_features:  # cached encoder features: the compiled forward would never run
        log.info("train.compile: not applied (frozen encoder features are cached)")
        return False
    task.net.compile(backend=backend)
    log.info(f"train.compile: network forward compiled with torch.compile(backend={backend!r})")
    return True


def _fit(
    cfg: Config, run: Path, task: MedtlTask, data, splits: dict[str, list[int]], progress: bool
) -> Path:
    t = cfg.train
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
    metrics_csv = EpochMetricsCSV(run / "metrics.csv")
    callbacks: list[L.Callback] = [ckpt, last_ckpt, metrics_csv]
    if t.patience > 0:
        callbacks.append(
            EarlyStopping(
                monitor=monitor, mode=mode, patience=t.patience, check_on_train_epoch_end=False
            )
        )
    last = run / "checkpoints" / "last.ckpt"
    resume_from = last if (t.resume and last.is_file()) else None
    if t.resume and resume_from is None:
        log.info(f"no {last}; training {run} from the start")
    if resume_from:
        metrics_csv.load_existing()
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
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
    val_idx = splits["val"] or splits["train"]
    train_loader, val_loader = _loaders(cfg, task, data, splits["train"], val_idx)
    choose_layout(cfg, task, train_loader)
    compile_net(cfg, task, on_features=not isinstance(train_loader.dataset, CachedDataset))
    t0 = time.perf_counter()
    try:
        trainer.fit(task, train_loader, val_loader, ckpt_path=resume_from, weights_only=False)
    except FloatingPointError as exc:
        raise MedtlError(str(exc)) from None
    elapsed = time.perf_counter() - t0
    if trainer.is_global_zero:
        best = ckpt.best_model_path
        if best:
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            task.load_state_dict(state)
        save_bundle(run, task.net, cfg, data.classes)
        score = ckpt.best_model_score
        log.info(
            f"finished in {elapsed:.1f}s; best {monitor}={float(score) if score is not None else float('nan'):.4f}"
        )
    return run
