"""The memory-format probe on part of the batch against the whole batch: peak memory, time, choice.

``train.memory_format=auto`` times one forward+backward step per layout (contiguous,
channels_last) before training on CPU and keeps the faster
(:mod:`medtl.runtime.memory_format`). It runs on :data:`PROBE_SHARE` of the first batch;
this benchmark runs it at each share given, in a fresh process per measurement (the bench
worker's model and data: U-Net, fine-tune, phantoms, random weights) and prints, per
encoder, size, round and share, the layout chosen, both speeds, the probe's seconds and
the process's peak resident memory (VmHWM) before and after the probe.

Run it on a quiet machine (the choice rests on timings). Measured: docs/performance.md,
section Memory.

Usage:
    python benchmarks/layout_probe.py [--encoders vgg16_bn,resnet18,efficientnet-lite0]
        [--sizes 256,128] [--shares 1.0,0.5] [--rounds 2] [--batch 8]
stdout: one JSON line per measurement, then a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(spec: dict) -> None:
    """One measurement in this process (``--child SPEC``)."""
    from medtl._bench import worker
    from medtl.runtime import memory_format
    from medtl.runtime.cpu import set_threads
    from medtl.runtime.memory import peak_rss_mb

    memory_format.PROBE_SHARE = spec.pop("share")
    cfg = worker._worker_config(spec)
    set_threads(cfg)
    run = worker._prepare(cfg)
    before = peak_rss_mb()
    batch = next(iter(run["loader"]))
    t0 = time.perf_counter()
    layout, speeds = memory_format.probe_layouts(run["task"], batch)
    print(
        json.dumps(
            {
                "layout": layout,
                "speeds": speeds,
                "probe_s": round(time.perf_counter() - t0, 2),
                "peak_mb_before": before,
                "peak_mb_after": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", default="vgg16_bn,resnet18,efficientnet-lite0")
    ap.add_argument("--sizes", default="256,128")
    ap.add_argument("--shares", default="1.0,0.5")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(json.loads(a.child))
        return
    from medtl.data.phantoms import make_phantoms

    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "phantoms"
        make_phantoms(root, n=a.images, size=max(sizes), seed=0)
        for r in range(a.rounds):
            for enc in a.encoders.split(","):
                for size in sizes:
                    for share in (float(s) for s in a.shares.split(",")):
                        spec = {
                            "overrides": [],
                            "encoder": enc,
                            "strategy": "finetune",
                            "size": size,
                            "batch": a.batch,
                            "steps": 1,
                            "warmup": 0,
                            "data_root": str(root),
                            "inference": False,
                            "layout": None,
                            "share": share,
                        }
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", json.dumps(spec)],
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout
                        row = {"round": r, "encoder": enc, "size": size, "share": share}
                        row |= json.loads(out.strip().splitlines()[-1])
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    print(
        "| round | encoder | size | share | layout | img/s contiguous / channels_last "
        "| probe s | peak MB before / after |"
    )
    print("|---|---|---:|---:|---|---|---:|---|")
    for x in rows:
        s = x["speeds"]
        print(
            f"| {x['round']} | {x['encoder']} | {x['size']} | {x['share']} | {x['layout']} "
            f"| {s['contiguous']} / {s['channels_last']} | {x['probe_s']} "
            f"| {x['peak_mb_before']:.0f} / {x['peak_mb_after']:.0f} |"
        )


if __name__ == "__main__":
    main()
