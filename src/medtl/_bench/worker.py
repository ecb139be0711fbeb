"""medtl's side of the benchmark: one encoder and strategy, measured in its own process.

:func:`medtl_worker` runs :func:`medtl.data.pipeline.prepare` (decode once) +
``make_loader`` and the real :class:`medtl.training.task.MedtlTask` driven by a Lightning
``Trainer`` (``warmup`` untimed + ``steps`` timed batches), so Lightning, metric logging and
the loss are inside the timing; the memory layout is chosen by the same probe as
``train.memory_format=auto``. With ``inference`` it also times
:class:`medtl.inference.engine.InferenceNet` (next to the eager network), the train DataLoader
alone and the FLOPs per image. ``python -m medtl._bench --worker SPEC_JSON`` runs it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from medtl._bench.measure import peak_gflops, probe_dtype
from medtl.runtime.flops import count_flops
from medtl.runtime.memory import peak_rss_mb

# Settings that make medtl's loop do the same work as the naive one (BCE, Adam lr 1e-4, no
# augmentation, no scheduler, random weights); the user's overrides come after these.
FAIR_DEFAULTS = (
    "task=segmentation",
    "model.arch=unet",
    "model.weights=none",
    "data.augment=none",
    "data.group_duplicates=false",
    "data.workers=0",
    "train.loss=bce",
    "train.optimizer=adam",
    "train.lr=1e-4",
    "train.weight_decay=0",
    "train.scheduler=none",
)


def _timed(loader: Iterable, warmup: int, steps: int, step_fn: Callable[[Any], Any]) -> float:
    """img/s over ``steps`` batches after ``warmup``, cycling the loader (as the naive loop)."""
    it: Any = iter(())
    t0, n_img = time.perf_counter(), 0
    for step in range(warmup + steps):
        if step == warmup:
            t0, n_img = time.perf_counter(), 0
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        step_fn(batch)
        n_img += batch[0].shape[0]
    return n_img / (time.perf_counter() - t0)


def _step_timer(warmup: int):
    """A Lightning callback timing training batches ``warmup..`` (img/s over those)."""
    import lightning as L

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.t1: float | None = None
            self.n_img = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == warmup and self.t0 is None:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step  # already incremented by this batch's optimiser step
            if step == warmup and warmup > 0:
                self.t0 = time.perf_counter()  # like the naive loop: next fetch is timed
            elif step > warmup:
                self.n_img += batch[1].shape[0]  # masks: batch[0] may be a feature tuple
                self.t1 = time.perf_counter()

        @property
        def img_per_s(self) -> float | None:
            if self.t0 is None or self.t1 is None or self.n_img == 0:
                return None
            return self.n_img / (self.t1 - self.t0)

    return StepTimer()


def _inference(net, loader, warmup: int, steps: int) -> tuple[str, float, dict]:
    """Inference img/s of the network evaluate/predict run by default
    (:class:`medtl.inference.engine.InferenceNet`) and, for reference, of the eager network as
    trained (contiguous). Returns ``(what InferenceNet did, its img/s, both speeds)``."""
    from medtl.inference.engine import InferenceNet

    def run(model) -> float:
        def step(batch):
            out = model(batch[0])
            return (torch.sigmoid(out["seg"]) > 0.5).float().mean().item()

        with torch.inference_mode():
            return round(_timed(loader, warmup, steps, step), 3)

    net.to(memory_format=torch.contiguous_format).eval()
    fast = InferenceNet(net)
    speeds = {"eager": run(net), "medtl": run(fast)}
    return fast.describe(), speeds["medtl"], speeds


def _worker_config(spec: dict[str, Any]):
    """The run's Config: :data:`FAIR_DEFAULTS`, the user's overrides, then ``spec``'s own."""
    from medtl.configuration.loading import load_config

    forced = [
        f"data.root={spec['data_root']}",
        f"model.encoder={spec['encoder']}",
        f"model.strategy={spec['strategy']}",
        f"data.image_size={spec['size']}",
        f"train.batch_size={spec['batch']}",
        f"train.memory_format={spec.get('layout') or 'auto'}",
    ]
    return load_config(None, [*FAIR_DEFAULTS, *spec.get("overrides", []), *forced])


def _prepare(cfg) -> dict[str, Any]:
    """Data, train loader, task (and feature cache when frozen), timed as ``medtl train``."""
    from medtl.data.pipeline import make_loader, prepare
    from medtl.models.build import build_model
    from medtl.training.features import cache_reason, feature_loader, spill_folder
    from medtl.training.task import MedtlTask

    t0 = time.perf_counter()
    data = prepare(cfg)
    cache_s = time.perf_counter() - t0
    idx = list(range(len(data.cache)))
    loader = make_loader(data, idx, cfg, train=True)
    net, _ = build_model(
        cfg.task,
        cfg.model.arch,
        cfg.model.encoder,
        cfg.model.weights,
        in_channels=cfg.model.in_channels,
    )
    task = MedtlTask(net, cfg)
    feature_s = None
    if cache_reason(cfg) is None:
        # frozen encoder: its features are computed once and only the decoder trains, as
        # in `medtl train` (the one-off cost is reported, the steps time the decoder)
        # (in memory up to train.feature_cache_mb, else in a temporary file)
        t0 = time.perf_counter()
        spill = spill_folder(cfg, task.net, len(idx) * (1 + cfg.data.augment_copies), None)
        loader = feature_loader(cfg, task, data, idx, True, spill)
        feature_s = round(time.perf_counter() - t0, 2)
    return {
        "data": data,
        "idx": idx,
        "loader": loader,
        "task": task,
        "cache_s": cache_s,
        "feature_s": feature_s,
    }


def bench_trainer(max_steps: int, callbacks: list, **flags: Any):
    """The Lightning ``Trainer`` the bench times training in: one CPU process,
    ``max_steps`` steps, no validation, logger, checkpoints, progress bar or model summary;
    ``flags`` add to that (``benchmarks/step_overhead.py``: ``barebones=True``)."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
        **flags,
    )


def _train_img_per_s(task, loader, warmup: int, steps: int) -> float | None:
    """Training img/s of a Lightning ``Trainer`` over ``warmup + steps`` batches."""
    timer = _step_timer(warmup)
    trainer = bench_trainer(warmup + steps, [timer])
    trainer.fit(task, loader)
    return round(timer.img_per_s or 0.0, 3) or None


def _inference_numbers(cfg, run: dict[str, Any], x1: torch.Tensor, warmup: int, steps: int):
    """Inference img/s (InferenceNet and eager), inference FLOPs and loader-only img/s."""
    from medtl.data.pipeline import make_loader

    task, idx, loader = run["task"], run["idx"], run["loader"]
    eval_loader = make_loader(run["data"], idx, cfg, train=False)
    variant, ips, variants = _inference(task.net, eval_loader, warmup, steps)
    out = {"infer_img_per_s": ips, "infer_variant": variant, "infer_variants": variants}
    task.net.eval()
    out["infer_flops_per_img"] = count_flops(task.net.to(memory_format=torch.contiguous_format), x1)
    n, t0 = 0, time.perf_counter()
    while n < max(2 * len(idx), 256):  # the cache is built: this is pure loader cost
        for batch in loader:
            n += batch[0].shape[0]
    out["loader_img_per_s"] = round(n / (time.perf_counter() - t0), 1)
    return out


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`medtl_worker`'s measurements, in the order ``medtl train`` does the work."""
    from medtl.runtime.cpu import set_threads
    from medtl.runtime.memory_format import choose_layout

    cfg = _worker_config(spec)
    set_threads(cfg)
    torch.manual_seed(cfg.train.seed)
    warmup, steps = int(spec["warmup"]), int(spec["steps"])
    run = _prepare(cfg)
    task, data = run["task"], run["data"]
    layout, probe = choose_layout(cfg, task, run["loader"])  # exactly as `medtl train` does
    out: dict[str, Any] = {
        "encoder": spec["encoder"],
        "strategy": spec["strategy"],
        "size": spec["size"],
        "batch": spec["batch"],
        "train_img_per_s": _train_img_per_s(task, run["loader"], warmup, steps),
        "layout": layout,
        "probe": probe,
        "cache_build_s": round(run["cache_s"], 2),
        "cache_mb": round(data.cache.nbytes / 2**20, 2),
        "feature_cache_s": run["feature_s"],
        "threads": torch.get_num_threads(),
    }
    x1 = torch.rand(1, 3, spec["size"], spec["size"])
    y1 = torch.zeros(1, 1, spec["size"], spec["size"])
    task.train()
    flops = count_flops(
        task.net, x1, lambda o: task.compute_loss(o, y1, torch.tensor([-1]))["loss"]
    )
    if run["feature_s"] is not None:  # cached features: a step never runs the encoder
        with torch.no_grad():
            flops -= count_flops(task.net.encoder, task.net.normalise(x1))
    out["train_flops_per_img"] = flops
    if spec.get("inference", True):
        out.update(_inference_numbers(cfg, run, x1, warmup, steps))
    # the peak in this process: its threads and the model's dtype (the parent's differ)
    out["peak_gflops"] = peak_gflops(dtype=probe_dtype(cfg.train.precision))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def medtl_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure medtl's pipeline for one encoder and strategy (run in its own process).

    ``spec``: ``overrides``, ``encoder``, ``strategy``, ``size``, ``batch``, ``steps``,
    ``warmup``, ``data_root``, ``inference`` (also time inference, loader and FLOPs),
    optionally ``layout`` (else the probe chooses, as ``train.memory_format=auto``).
    """
    from medtl.runtime.quiet import quiet_lightning

    medtl_log = logging.getLogger("medtl")
    level = medtl_log.level
    medtl_log.setLevel(logging.WARNING)
    try:
        with quiet_lightning():
            return _measure(spec)
    finally:
        medtl_log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """``python -m medtl._bench --worker SPEC_JSON`` (internal: one medtl measurement)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--worker":
        print(json.dumps(medtl_worker(json.loads(argv[1]))), flush=True)
        return 0
    print(
        "usage: python -m medtl._bench --worker SPEC_JSON (use 'medtl bench' instead)",
        file=sys.stderr,
    )
    return 2
