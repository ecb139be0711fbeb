"""Orchestration: naive and medtl measurements, one subprocess each, back to back.

:func:`run_bench` measures, per encoder and strategy, the naive loop and then
:func:`medtl._bench.worker.medtl_worker` (each in a fresh process, so its peak RSS is its
own), on the same data; :func:`size_scaling` does the same for fine-tuning at several image
sizes. :func:`cli_settings` turns ``medtl bench``'s options into keyword arguments.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from medtl._bench.measure import median_merge, peak_gflops, ratio
from medtl._bench.naive import locate_naive, naive_command, run_json
from medtl._bench.summary import REFERENCE_ENCODER, STRATEGIES, summarise
from medtl._bench.worker import FAIR_DEFAULTS
from medtl.models.registry import get_encoder_spec

QUICK = {"size": 64, "encoders": ("resnet18",), "steps": 3, "warmup": 1, "n_images": 16}


def run_medtl(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`medtl_worker` in a fresh Python process (its own peak RSS, no warm caches)."""
    cmd = [sys.executable, "-m", "medtl._bench", "--worker", json.dumps(spec)]
    return run_json(cmd, f"medtl bench worker ({spec['encoder']}, {spec['strategy']})")


def _data_root(overrides: Sequence[str]) -> str | None:
    roots = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "data.root"]
    return roots[-1] if roots else None


def _bench_data(overrides: Sequence[str], tmp: str, n_images: int, size: int) -> tuple[str, int]:
    """``(root, n_images)``: ``data.root`` from ``overrides`` with its images counted, else
    ``n_images`` phantoms made at ``size`` px in ``tmp``."""
    root = _data_root(overrides)
    if root is None:
        from medtl.data.phantoms import make_phantoms

        return str(make_phantoms(Path(tmp) / "phantoms", n=n_images, size=size)), n_images
    n = sum(
        1
        for p in Path(root).rglob("*")
        if p.suffix.lower() in (".png", ".jpg")
        and "_mask" not in p.stem
        and p.parent.name != "masks"
    )
    return root, n


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _machine() -> dict[str, Any]:
    """When and on what the benchmark ran (the first keys of its ``meta``)."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def _spec(overrides: Sequence[str], encoder: str, strategy: str, root: str, **kw: Any) -> dict:
    """A worker spec; ``kw``: ``size``, ``batch``, ``steps``, ``warmup``, ``inference``."""
    return {
        "overrides": list(overrides),
        "encoder": encoder,
        "strategy": strategy,
        "size": kw["size"],
        "batch": kw["batch"],
        "steps": kw["steps"],
        "warmup": kw["warmup"],
        "data_root": root,
        "inference": kw["inference"],
    }


def _measure_pair(
    script: Path, root: str, tmp: str, spec: dict[str, Any], smp_name: str, repeats: int, say
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(naive, medtl) for one encoder and strategy; ``repeats`` interleaved pairs, medians."""
    enc, strategy = spec["encoder"], spec["strategy"]
    cmd = naive_command(
        script,
        Path(root),
        smp_name,
        spec["size"],
        spec["batch"],
        spec["steps"],
        spec["warmup"],
        strategy == "frozen",
    )
    naive_runs, medtl_runs = [], []
    for _ in range(max(1, repeats)):
        naive_runs.append(run_json(cmd, f"naive loop ({enc}, {strategy})", Path(tmp)))
        say(f"bench: naive {enc} {strategy}: {naive_runs[-1]}")
        medtl_runs.append(run_medtl(spec))
        say(f"bench: medtl {enc} {strategy}: {medtl_runs[-1]}")
    return median_merge(naive_runs), median_merge(medtl_runs)


def _measure_encoder(
    script: Path,
    root: str,
    tmp: str,
    overrides: Sequence[str],
    encoder: str,
    strategies: Sequence[str],
    shape: dict[str, int],
    repeats: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``{"naive": {strategy: ...}, "medtl": {strategy: ...}}`` for one encoder."""
    smp_name = get_encoder_spec(encoder).smp_name
    res: dict[str, Any] = {"naive": {}, "medtl": {}}
    for strategy in strategies:
        spec = _spec(overrides, encoder, strategy, root, inference=strategy != "frozen", **shape)
        res["naive"][strategy], res["medtl"][strategy] = _measure_pair(
            script, root, tmp, spec, smp_name, repeats, say
        )
    return res


def _say(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def run_bench(
    overrides: list[str],
    naive_script: str | Path | None = None,
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

    ``naive_script``: the naive loop's script (see :func:`locate_naive` for the fallbacks).
    ``repeats`` > 1 runs each naive/medtl pair that many times, interleaved (naive, medtl,
    naive, medtl, ...), and keeps the median of every number (:func:`median_merge`), which
    damps a shared machine's swings in speed.

    Data: ``data.root=...`` from ``overrides``, else ``n_images`` phantoms at ``size`` px in a
    temporary folder. ``overrides`` also reach medtl's config (after :data:`FAIR_DEFAULTS`).
    Every measurement runs in its own subprocess, one after the other.
    """
    from medtl.configuration.loading import load_config

    say = echo or _say
    script = locate_naive(naive_script)
    load_config(None, [*FAIR_DEFAULTS, *overrides])  # fail fast on a bad key
    for e in encoders:  # fail fast on an unknown encoder, before any measurement
        get_encoder_spec(e)
    load_before = _load_average()
    shape = {"size": size, "batch": batch, "steps": steps, "warmup": warmup}
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        root, n_images = _bench_data(overrides, tmp, n_images, size)
        say(
            f"bench: data {root} ({n_images} images), {size}px, batch {batch}, "
            f"{warmup}+{steps} steps, threads {torch.get_num_threads()}"
        )
        peak = peak_gflops()
        say(f"bench: float32 peak (best of matmuls and a 3x3 convolution) {peak} GFLOP/s")
        results = {
            enc: _measure_encoder(
                script, root, tmp, overrides, enc, strategies, shape, repeats, say
            )
            for enc in encoders
        }
    meta = {
        **_machine(),
        **shape,
        "n_images": n_images,
        "overrides": list(overrides),
        "repeats": max(1, repeats),
        "load_avg_before": load_before,
        "load_avg_after": _load_average(),
    }
    return summarise(results, peak, meta)


def _scaling_row(s: int, naive: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    return {
        "size": s,
        "naive_train_img_per_s": naive["train_img_per_s"],
        "train_img_per_s": ours["train_img_per_s"],
        "ratio": ratio(ours["train_img_per_s"], naive["train_img_per_s"]),
        "cache_mb": ours.get("cache_mb"),
        "cache_mb_per_1000_images": round(4 * s * s * 1000 / 2**20, 1),
        "layout": ours["layout"],
        "train_gflops_per_img": round(ours["train_flops_per_img"] / 1e9, 2),
        "peak_rss_mb": ours["peak_rss_mb"],
    }


def size_scaling(
    overrides: list[str],
    sizes: Sequence[int] = (128, 256, 384),
    encoder: str = REFERENCE_ENCODER,
    batch: int = 8,
    steps: int = 10,
    warmup: int = 2,
    n_images: int = 64,
    naive_script: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Fine-tuning img/s of medtl and of the naive loop at each image size (phantoms made
    at the largest size), their ratio, medtl's decode-cache size and peak RSS."""
    script = locate_naive(naive_script)
    smp_name = get_encoder_spec(encoder).smp_name
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        root, _ = _bench_data(overrides, tmp, n_images, max(sizes))
        rows = []
        for s in sizes:
            spec = _spec(
                overrides,
                encoder,
                "finetune",
                root,
                size=s,
                batch=batch,
                steps=steps,
                warmup=warmup,
                inference=False,
            )
            cmd = naive_command(script, Path(root), smp_name, s, batch, steps, warmup, False)
            naive = run_json(cmd, f"naive loop ({encoder}, {s}px)", Path(tmp))
            rows.append(_scaling_row(s, naive, run_medtl(spec)))
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
