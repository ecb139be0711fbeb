"""Decode speed on a 1000-image JPEG set: first epoch vs a later one, audit threads, disk cache.

Issue 22's "must show" (a benchmark, not a test; the decode counts are tested in
tests/data/test_cache.py):

- **first epoch <= 1.2x a later epoch**: ``medtl`` trains a small classifier on the set;
  the first epoch's cost is the decode before it (``prepare``: grouping hashes and the
  resized cache from one parallel decode, timed on its own in this process, cold) plus the
  Lightning epoch 0 (``RUN/run.json``); a later epoch is the median of epochs 1..;
- **audit >= 1.8x faster than single-threaded on 2 cores**: ``medtl.data.audit.report.audit`` with
  ``MEDTL_DECODE_THREADS=1`` against the default (one worker per core: forked processes
  on Linux, as in ``medtl audit`` and the cache fill), the best of
  ``--repeats`` interleaved runs each;
- the disk cache: filling it vs reading it back in a second run (no decode).

The images are random smooth pictures with blobs and noise (~600x500, JPEG quality 90),
two class folders. Run it on a quiet machine only (``uptime``: 1-minute load < 1.5; the
script refuses otherwise unless ``--force``), nothing else running.

Usage:
    python benchmarks/decode_speed.py [--n 1000] [--size 128] [--epochs 5]
        [--encoder resnet18] [--repeats 2] [--out /tmp/decode_speed] [--force]
stdout: one line per measurement and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medtl.utils.parallel import THREADS_ENV, decode_threads, fork_is_safe


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` random ~600x500 JPEGs in two class folders under ``root`` (kept if present)."""
    if len(list(root.rglob("*.jpg"))) == n:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(480, 521)), int(rng.integers(580, 621))
        coarse = rng.integers(30, 220, (6, 7, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.integers(100, h - 100), rng.integers(100, w - 100), rng.integers(20, 90)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        noisy = img.astype(np.int16) + rng.integers(-12, 13, img.shape)
        noisy[blob] += 40 if i % 2 else -40
        path = root / ("a" if i % 2 else "b") / f"img{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def _overrides(args: argparse.Namespace, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        "task=classification",
        f"data.image_size={args.size}",
        "data.augment=none",
        f"model.encoder={args.encoder}",
        "model.weights=none",
        f"train.epochs={args.epochs}",
        "train.batch_size=16",
        "train.patience=0",
        f"output.dir={out}",
        *extra,
    ]


def epochs(args: argparse.Namespace, root: Path, out: Path) -> dict[str, float]:
    """Decode time (cold, memory mode), then training: epoch 0 and the later epochs."""
    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import prepare
    from medtl.training.fit import train

    cfg = load_config(overrides=_overrides(args, root, out))
    t0 = time.perf_counter()
    prepare(cfg)
    decode_s = time.perf_counter() - t0
    run = train(load_config(overrides=_overrides(args, root, out)), progress=False)
    seconds = [e["seconds"] for e in json.loads((run / "run.json").read_text())["epochs"]]
    first, later = decode_s + seconds[0], statistics.median(seconds[1:])
    print(f"decode+cache {decode_s:.1f}s, epochs {[round(s, 1) for s in seconds]}")
    print(f"first epoch {first:.1f}s vs later {later:.1f}s: {first / later:.2f}x (target <= 1.2)")
    return {
        "decode_s": decode_s,
        "epoch_s": seconds,
        "first_epoch_s": first,
        "later_epoch_s": later,
        "first_vs_later": first / later,
    }


def workers() -> str:
    """What the audit and the cache fill decode on here: forked processes, else threads."""
    return "processes" if fork_is_safe() else "threads"


def audit_threads(root: Path, repeats: int) -> dict[str, float]:
    """The best of ``repeats`` audits single-threaded and on every core, interleaved."""
    from medtl.data.audit.report import audit

    best = {"1": float("inf"), "all": float("inf")}
    for _ in range(repeats):
        for key in ("1", "all"):
            if key == "1":
                os.environ[THREADS_ENV] = "1"
            else:
                os.environ.pop(THREADS_ENV, None)
            t0 = time.perf_counter()
            audit(root)
            best[key] = min(best[key], time.perf_counter() - t0)
    os.environ.pop(THREADS_ENV, None)
    ratio = best["1"] / best["all"]
    print(
        f"audit: 1 thread {best['1']:.1f}s, {decode_threads()} {workers()} {best['all']:.1f}s: "
        f"{ratio:.2f}x (target >= 1.8 on 2 cores)"
    )
    return {"audit_1_thread_s": best["1"], "audit_parallel_s": best["all"], "audit_ratio": ratio}


def disk_cache(args: argparse.Namespace, root: Path, out: Path) -> dict[str, float]:
    """``data.cache=disk``: the first prepare fills the cache, the second reads it back."""
    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import prepare

    folder = out / "cache"
    shutil.rmtree(folder, ignore_errors=True)  # a cache left by an earlier run would be reused
    times = []
    for _ in range(2):
        disk = ("data.cache=disk", f"data.cache_dir={folder}")
        cfg = load_config(overrides=_overrides(args, root, out, *disk))
        t0 = time.perf_counter()
        prepare(cfg)
        times.append(time.perf_counter() - t0)
    print(f"disk cache: fill {times[0]:.1f}s, second run {times[1]:.2f}s (no decode)")
    return {"disk_fill_s": times[0], "disk_reuse_s": times[1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "decode_speed")
    p.add_argument("--force", action="store_true", help="measure even on a busy machine")
    args = p.parse_args()
    load = os.getloadavg()[0]
    if load >= 1.5 and not args.force:
        print(f"1-minute load {load:.2f} >= 1.5: not measuring (--force to anyway)")
        return 2
    root = make_jpegs(args.out / "jpegs", args.n)
    result = {"n": args.n, "threads": decode_threads(), "audit_workers": workers()}
    result["load_at_start"] = load
    result |= audit_threads(root, args.repeats)
    result |= disk_cache(args, root, args.out)
    result |= epochs(args, root, args.out / "runs")
    result["load_at_end"] = os.getloadavg()[0]
    print(json.dumps({"schema": "medtl.decode_speed/1", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
