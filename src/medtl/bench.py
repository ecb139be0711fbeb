"""``medtl bench``: medtl's training/inference throughput and memory vs the naive loop.

One invocation runs, back to back on the same data and machine, for each encoder's U-Net:

- the reference naive loop (``shared/bench/naive_baseline.py``: PIL decode every step,
  plain PyTorch, no Lightning), fine-tuned and ``--frozen``, in a subprocess;
- medtl's own pipeline measured the same way (``warmup`` untimed + ``steps`` timed
  batches, images/s): :func:`medtl.data.pipeline.prepare` (decode once) + ``make_loader``
  and the real :class:`medtl.engine.task.MedtlTask` driven by a Lightning ``Trainer``, so
  Lightning, metric logging and the loss are all inside the timing. It runs in its own
  subprocess too, so its peak RSS is its own. The memory layout (contiguous or
  channels_last) is chosen by the same one-step probe as ``train.memory_format=auto``;
  inference runs :class:`medtl.inference.InferenceNet`, the network ``medtl evaluate`` and
  ``predict`` run (Conv-BN folded, channels_last), next to the eager one for reference;
- the train DataLoader alone (after the cache is built) -> ``loader_vs_train``;
- FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``; forward, and forward +
  backward for training) and a float32 2048x2048 matmul peak measured in the same run
  -> model FLOP utilisation (``train_mfu``, ``infer_mfu``).

The last line printed is one JSON object (:func:`summarise`). Speed claims are ratios
against the naive loop measured in the same run; absolute img/s depend on the machine.

Example::

    from medtl.bench import run_bench
    result = run_bench([], encoders=("resnet18",), size=64, steps=3, warmup=1)
    result["train_speedup"]  # medtl img/s / naive img/s, fine-tuning ResNet18-UNet
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from medtl.errors import MedtlError

log = logging.getLogger("medtl")

SCHEMA = "medtl.bench/1"
REFERENCE_ENCODER = "resnet18"
STRATEGIES = ("finetune", "frozen")
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
QUICK = {"size": 64, "encoders": ("resnet18",), "steps": 3, "warmup": 1, "n_images": 16}


# --------------------------------------------------------------------------- pure helpers


def default_naive_script() -> Path:
    """``<repo>/../shared/bench/naive_baseline.py`` (the repo is ``src/medtl/..``'s parent)."""
    import medtl

    return Path(medtl.__file__).resolve().parents[3] / "shared" / "bench" / "naive_baseline.py"


def locate_naive(naive_script: str | Path | None = None) -> Path:
    """The naive baseline script; :class:`MedtlError` naming the expected path if missing."""
    path = Path(naive_script) if naive_script is not None else default_naive_script()
    if not path.is_file():
        raise MedtlError(
            f"naive baseline script not found at {path}; "
            "pass its location with --naive PATH (run_bench(naive_script=PATH))"
        )
    return path


def ratio(medtl_value: float | None, naive_value: float | None) -> float | None:
    """``medtl / naive`` (speed-up when both are img/s); None when either is missing or 0."""
    if not medtl_value or not naive_value:
        return None
    return round(medtl_value / naive_value, 3)


def median_merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One measurement from repeated ones: the median of every numeric key (others from the
    first run); with several runs, ``repeats_train_img_per_s`` lists the raw values."""
    import statistics

    out = dict(runs[0])
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
    if len(runs) > 1:
        out["repeats_train_img_per_s"] = [r.get("train_img_per_s") for r in runs]
    return out


def epoch_seconds(n_images: int, img_per_s: float | None) -> float | None:
    """Seconds one pass over ``n_images`` takes at ``img_per_s``."""
    if not img_per_s:
        return None
    return round(n_images / img_per_s, 2)


def mfu(flops_per_image: float | None, img_per_s: float | None, peak_gflops: float) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the measured matmul peak (0..1)."""
    if not flops_per_image or not img_per_s or not peak_gflops:
        return None
    return round(flops_per_image * img_per_s / (peak_gflops * 1e9), 4)


def count_flops(
    model: torch.nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
) -> float:
    """FLOPs per image of one forward (and backward, when ``loss_fn`` maps output to a loss).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; a
    multiply-add is 2 FLOPs). Gradients made by the backward pass are cleared afterwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if loss_fn is None:
        with torch.no_grad(), counter:
            model(x)
    else:
        with counter:
            loss_fn(model(x)).backward()
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def matmul_gflops(n: int = 2048, reps: int = 8, warmup: int = 2) -> float:
    """Measured float32 ``n x n`` matmul throughput (GFLOP/s): the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(warmup):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return round(2 * n**3 * reps / (time.perf_counter() - t0) / 1e9, 2)


def naive_command(
    script: Path,
    data: Path,
    encoder: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    frozen: bool,
) -> list[str]:
    """The naive baseline's command line (``encoder`` is the smp name it passes to smp.Unet)."""
    cmd = [
        sys.executable,
        str(script),
        str(data),
        "--encoder",
        encoder,
        "--size",
        str(size),
        "--batch",
        str(batch),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    return cmd + (["--frozen"] if frozen else [])


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object line in output")


def _encoder_summary(e: dict[str, Any], n_images: int, peak: float) -> dict[str, Any]:
    """Per-encoder block: both sides' raw numbers, ratios, epoch times, FLOPs and MFU."""
    out: dict[str, Any] = {}
    for strategy in STRATEGIES:
        naive, ours = e.get("naive", {}).get(strategy), e.get("medtl", {}).get(strategy)
        if not naive and not ours:
            continue
        nt = (naive or {}).get("train_img_per_s")
        mt = (ours or {}).get("train_img_per_s")
        flops = (ours or {}).get("train_flops_per_img")
        out[strategy] = {
            "naive_train_img_per_s": nt,
            "medtl_train_img_per_s": mt,
            "train_ratio": ratio(mt, nt),
            "naive_epoch_s": epoch_seconds(n_images, nt),
            "medtl_epoch_s": epoch_seconds(n_images, mt),
            "naive_peak_rss_mb": (naive or {}).get("peak_rss_mb"),
            "medtl_peak_rss_mb": (ours or {}).get("peak_rss_mb"),
            "train_flops_per_img": flops,
            "train_mfu": mfu(flops, mt, peak),
            "layout": (ours or {}).get("layout"),
            "probe_img_per_s": (ours or {}).get("probe"),
            # frozen: encoder features computed once before the first epoch (None: not cached)
            "feature_cache_s": (ours or {}).get("feature_cache_s"),
        }
    naive_ft = e.get("naive", {}).get("finetune") or {}
    ours_ft = e.get("medtl", {}).get("finetune") or {}
    ni, mi = naive_ft.get("infer_img_per_s"), ours_ft.get("infer_img_per_s")
    iflops = ours_ft.get("infer_flops_per_img")
    out["inference"] = {
        "naive_img_per_s": ni,
        "medtl_img_per_s": mi,
        "ratio": ratio(mi, ni),
        "naive_epoch_s": epoch_seconds(n_images, ni),
        "medtl_epoch_s": epoch_seconds(n_images, mi),
        "variant": ours_ft.get("infer_variant"),
        "variants_img_per_s": ours_ft.get("infer_variants"),
        "infer_flops_per_img": iflops,
        "infer_mfu": mfu(iflops, mi, peak),
    }
    li = ours_ft.get("loader_img_per_s")
    out["loader"] = {
        "img_per_s": li,
        "vs_train": ratio(li, ours_ft.get("train_img_per_s")),
        "cache_build_s": ours_ft.get("cache_build_s"),
    }
    return out


def summarise(
    results: dict[str, dict[str, Any]],
    peak_gflops: float,
    meta: dict[str, Any],
    reference: str = REFERENCE_ENCODER,
) -> dict[str, Any]:
    """The benchmark's JSON object from raw per-encoder measurements.

    ``results[encoder] = {"naive": {strategy: naive JSON}, "medtl": {strategy: worker JSON}}``
    (strategy ``finetune`` | ``frozen``). The headline keys (``train_speedup``,
    ``frozen_speedup``, ``infer_speedup``, ``loader_vs_train``, ``train_mfu``, ``infer_mfu``)
    are those of ``reference`` (ResNet18-UNet; the first encoder when it is absent);
    ``peak_rss_mb`` is the largest peak RSS of any medtl process in the run.
    """
    n_images = int(meta.get("n_images", 0))
    encoders = {e: _encoder_summary(r, n_images, peak_gflops) for e, r in results.items()}
    ref = reference if reference in encoders else next(iter(encoders), None)
    r = encoders.get(ref, {})
    rss = [
        s.get("peak_rss_mb")
        for res in results.values()
        for s in res.get("medtl", {}).values()
        if s and s.get("peak_rss_mb")
    ]
    naive_rss = [
        s.get("peak_rss_mb")
        for res in results.values()
        for s in res.get("naive", {}).values()
        if s and s.get("peak_rss_mb")
    ]
    return {
        "schema": SCHEMA,
        "reference_encoder": ref,
        "train_speedup": r.get("finetune", {}).get("train_ratio"),
        "frozen_speedup": r.get("frozen", {}).get("train_ratio"),
        "infer_speedup": r.get("inference", {}).get("ratio"),
        "loader_vs_train": r.get("loader", {}).get("vs_train"),
        "peak_rss_mb": max(rss) if rss else None,
        "naive_peak_rss_mb": max(naive_rss) if naive_rss else None,
        "train_mfu": r.get("finetune", {}).get("train_mfu"),
        "infer_mfu": r.get("inference", {}).get("infer_mfu"),
        "matmul_gflops": peak_gflops,
        "encoders": encoders,
        "meta": meta,
    }


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, Any, Any, Any]]:
    """``(encoder, strategy, naive img/s, medtl img/s, ratio)`` rows of a :func:`summarise` dict."""
    rows = []
    for enc, e in summary["encoders"].items():
        for strategy in STRATEGIES:
            if strategy in e:
                s = e[strategy]
                rows.append(
                    (
                        enc,
                        f"train {strategy}",
                        s["naive_train_img_per_s"],
                        s["medtl_train_img_per_s"],
                        s["train_ratio"],
                    )
                )
        i = e["inference"]
        rows.append((enc, "inference", i["naive_img_per_s"], i["medtl_img_per_s"], i["ratio"]))
    return rows


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table of :func:`table_rows`."""

    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    head = ("encoder", "strategy", "naive img/s", "medtl img/s", "ratio")
    rows = [head] + [tuple(cell(v) for v in r) for r in table_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


# --------------------------------------------------------------------------- medtl worker


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
    (:class:`medtl.inference.InferenceNet`) and, for reference, of the eager network as
    trained (contiguous). Returns ``(what InferenceNet did, its img/s, both speeds)``."""
    from medtl.inference import InferenceNet

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


def medtl_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure medtl's pipeline for one encoder and strategy (run in its own process).

    ``spec``: ``overrides``, ``encoder``, ``strategy``, ``size``, ``batch``, ``steps``,
    ``warmup``, ``data_root``, ``inference`` (also time inference, loader and FLOPs).
    """
    import lightning as L

    from medtl.config import load_config
    from medtl.data.pipeline import make_loader, prepare
    from medtl.engine.features import cache_reason
    from medtl.engine.task import MedtlTask
    from medtl.models.build import build_model
    from medtl.training import choose_layout, feature_loader, quiet_lightning, set_threads

    quiet_lightning()
    logging.getLogger("medtl").setLevel(logging.WARNING)
    forced = [
        f"data.root={spec['data_root']}",
        f"model.encoder={spec['encoder']}",
        f"model.strategy={spec['strategy']}",
        f"data.image_size={spec['size']}",
        f"train.batch_size={spec['batch']}",
        f"train.memory_format={spec.get('layout') or 'auto'}",
    ]
    cfg = load_config(None, [*FAIR_DEFAULTS, *spec.get("overrides", []), *forced])
    set_threads(cfg)
    torch.manual_seed(cfg.train.seed)
    warmup, steps = int(spec["warmup"]), int(spec["steps"])

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
        t0 = time.perf_counter()
        loader = feature_loader(cfg, task, data, idx, train=True)
        feature_s = round(time.perf_counter() - t0, 2)
    layout, probe = choose_layout(cfg, task, loader)  # exactly as `medtl train` does

    timer = _step_timer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(task, loader)
    out: dict[str, Any] = {
        "encoder": spec["encoder"],
        "strategy": spec["strategy"],
        "size": spec["size"],
        "batch": spec["batch"],
        "train_img_per_s": round(timer.img_per_s or 0.0, 3) or None,
        "layout": layout,
        "probe": probe,
        "cache_build_s": round(cache_s, 2),
        "cache_mb": round(data.cache.nbytes / 2**20, 2),
        "feature_cache_s": feature_s,
        "threads": torch.get_num_threads(),
    }
    x1 = torch.rand(1, 3, spec["size"], spec["size"])
    y1 = torch.zeros(1, 1, spec["size"], spec["size"])
    task.train()
    out["train_flops_per_img"] = count_flops(
        task.net, x1, lambda o: task.compute_loss(o, y1, torch.tensor([-1]))["loss"]
    )
    if spec.get("inference", True):
        eval_loader = make_loader(data, idx, cfg, train=False)
        variant, ips, variants = _inference(task.net, eval_loader, warmup, steps)
        out.update(infer_img_per_s=ips, infer_variant=variant, infer_variants=variants)
        task.net.eval()
        out["infer_flops_per_img"] = count_flops(
            task.net.to(memory_format=torch.contiguous_format), x1
        )
        n, t0 = 0, time.perf_counter()
        while n < max(2 * len(idx), 256):  # the cache is built: this is pure loader cost
            for batch in loader:
                n += batch[0].shape[0]
        out["loader_img_per_s"] = round(n / (time.perf_counter() - t0), 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


# --------------------------------------------------------------------------- orchestration


def _run_json(cmd: list[str], what: str, cwd: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise MedtlError(f"{what} failed (exit {proc.returncode}): {tail}")
    try:
        return last_json_line(proc.stdout)
    except ValueError:
        raise MedtlError(
            f"{what} printed no JSON line; stdout was: {proc.stdout[-300:]!r}"
        ) from None


def run_medtl(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`medtl_worker` in a fresh Python process (its own peak RSS, no warm caches)."""
    cmd = [sys.executable, "-m", "medtl.bench", "--worker", json.dumps(spec)]
    return _run_json(cmd, f"medtl bench worker ({spec['encoder']}, {spec['strategy']})")


def _data_root(overrides: Sequence[str]) -> str | None:
    roots = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "data.root"]
    return roots[-1] if roots else None


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_bench(
    overrides: list[str],
    naive_script: Path | None = None,
    encoders: Sequence[str] = ("resnet18", "efficientnet-lite0", "vgg16_bn"),
    size: int = 256,
    batch: int = 8,
    steps: int = 10,
    warmup: int = 2,
    *,
    strategies: Sequence[str] = STRATEGIES,
    n_images: int = 64,
    echo: Callable[[str], None] | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Benchmark medtl against the naive loop; returns the :func:`summarise` dict.

    ``repeats`` > 1 runs each naive/medtl pair that many times, interleaved (naive, medtl,
    naive, medtl, ...), and keeps the median of every number (:func:`median_merge`), which
    damps a shared machine's swings in speed.

    Data: ``data.root=...`` from ``overrides``, else ``n_images`` phantoms at ``size`` px in a
    temporary folder. ``overrides`` also reach medtl's config (after :data:`FAIR_DEFAULTS`).
    Every measurement runs in its own subprocess, one after the other.
    """
    from medtl.config import load_config
    from medtl.models.encoders import get_encoder_spec

    say = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    script = locate_naive(naive_script)
    load_config(None, [*FAIR_DEFAULTS, *overrides])  # fail fast on a bad key
    smp_names = {e: get_encoder_spec(e).smp_name for e in encoders}
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        root = _data_root(overrides)
        if root is None:
            from medtl.data.synthetic import make_phantoms

            root = str(make_phantoms(Path(tmp) / "phantoms", n=n_images, size=size))
        else:
            n_images = sum(
                1
                for p in Path(root).rglob("*")
                if p.suffix.lower() in (".png", ".jpg")
                and "_mask" not in p.stem
                and p.parent.name != "masks"
            )
        say(
            f"bench: data {root} ({n_images} images), {size}px, batch {batch}, "
            f"{warmup}+{steps} steps, threads {torch.get_num_threads()}"
        )
        peak = matmul_gflops()
        say(f"bench: float32 2048^2 matmul peak {peak} GFLOP/s")
        results: dict[str, dict[str, Any]] = {}
        for enc in encoders:
            res: dict[str, Any] = {"naive": {}, "medtl": {}}
            for strategy in strategies:
                frozen = strategy == "frozen"
                cmd = naive_command(
                    script, Path(root), smp_names[enc], size, batch, steps, warmup, frozen
                )
                spec = {
                    "overrides": list(overrides),
                    "encoder": enc,
                    "strategy": strategy,
                    "size": size,
                    "batch": batch,
                    "steps": steps,
                    "warmup": warmup,
                    "data_root": root,
                    "inference": not frozen,
                }
                naive_runs, medtl_runs = [], []
                for _ in range(max(1, repeats)):
                    naive_runs.append(_run_json(cmd, f"naive loop ({enc}, {strategy})", Path(tmp)))
                    say(f"bench: naive {enc} {strategy}: {naive_runs[-1]}")
                    medtl_runs.append(run_medtl(spec))
                    say(f"bench: medtl {enc} {strategy}: {medtl_runs[-1]}")
                res["naive"][strategy] = median_merge(naive_runs)
                res["medtl"][strategy] = median_merge(medtl_runs)
            results[enc] = res
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "size": size,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "n_images": n_images,
        "overrides": list(overrides),
        "repeats": max(1, repeats),
        "load_avg_before": load_before,
        "load_avg_after": _load_average(),
    }
    return summarise(results, peak, meta)


def size_scaling(
    overrides: list[str],
    sizes: Sequence[int] = (128, 256, 384),
    encoder: str = REFERENCE_ENCODER,
    batch: int = 8,
    steps: int = 10,
    warmup: int = 2,
    n_images: int = 64,
    naive_script: Path | None = None,
) -> list[dict[str, Any]]:
    """Fine-tuning img/s of medtl and of the naive loop at each image size (phantoms made
    at the largest size), their ratio, medtl's decode-cache size and peak RSS."""
    from medtl.models.encoders import get_encoder_spec

    script = locate_naive(naive_script)
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        root = _data_root(overrides)
        if root is None:
            from medtl.data.synthetic import make_phantoms

            root = str(make_phantoms(Path(tmp) / "phantoms", n=n_images, size=max(sizes)))
        rows = []
        for s in sizes:
            spec = {
                "overrides": list(overrides),
                "encoder": encoder,
                "strategy": "finetune",
                "size": s,
                "batch": batch,
                "steps": steps,
                "warmup": warmup,
                "data_root": root,
                "inference": False,
            }
            cmd = naive_command(
                script,
                Path(root),
                get_encoder_spec(encoder).smp_name,
                s,
                batch,
                steps,
                warmup,
                False,
            )
            n = _run_json(cmd, f"naive loop ({encoder}, {s}px)", Path(tmp))
            r = run_medtl(spec)
            rows.append(
                {
                    "size": s,
                    "naive_train_img_per_s": n["train_img_per_s"],
                    "train_img_per_s": r["train_img_per_s"],
                    "ratio": ratio(r["train_img_per_s"], n["train_img_per_s"]),
                    "cache_mb": r.get("cache_mb"),
                    "cache_mb_per_1000_images": round(4 * s * s * 1000 / 2**20, 1),
                    "layout": r["layout"],
                    "train_gflops_per_img": round(r["train_flops_per_img"] / 1e9, 2),
                    "peak_rss_mb": r["peak_rss_mb"],
                }
            )
    return rows


def cli_settings(
    encoders: str | None = None,
    steps: int | None = None,
    quick: bool = False,
    repeats: int | None = None,
) -> dict[str, Any]:
    """:func:`run_bench` keyword arguments for ``medtl bench [--encoders a,b] [--steps N] [--quick]``.

    ``--quick`` (64 px, resnet18, 1+3 steps, 16 images) is for smoke tests; explicit
    ``--encoders`` / ``--steps`` still win over it.
    """
    kw: dict[str, Any] = {}
    if quick:
        kw.update(QUICK)
    if encoders:
        kw["encoders"] = tuple(e.strip() for e in encoders.split(",") if e.strip())
    if steps is not None:
        kw["steps"] = int(steps)
    if repeats is not None:
        kw["repeats"] = int(repeats)
    return kw


def main(argv: list[str] | None = None) -> int:
    """``python -m medtl.bench --worker SPEC_JSON`` (internal: one medtl measurement)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--worker":
        print(json.dumps(medtl_worker(json.loads(argv[1]))), flush=True)
        return 0
    print(
        "usage: python -m medtl.bench --worker SPEC_JSON (use 'medtl bench' instead)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
