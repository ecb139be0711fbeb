"""Benchmark medtl against the naive reference loop (thin wrapper over :mod:`medtl._bench`).

    python benchmarks/run_bench.py                      # full: 3 encoders, 256 px, batch 8
    python benchmarks/run_bench.py --quick              # smoke test: 64 px, resnet18, 3 steps
    python benchmarks/run_bench.py --encoders resnet18 --steps 5 data.root=/data/busi
    python benchmarks/run_bench.py --sizes 128,256,384  # also medtl's img/s vs image size

Prints progress on stderr, then a table, and as the last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medtl._bench import cli_settings, format_table, run_bench, size_scaling
from medtl.utils.errors import MedtlError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="key=value medtl overrides, e.g. data.root=DIR")
    ap.add_argument(
        "--naive", type=Path, help="naive_baseline.py (default: $MEDTL_NAIVE_BASELINE, ./)"
    )
    ap.add_argument("--encoders", help="default: resnet18,efficientnet-lite0,vgg16_bn")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--sizes", help="also time medtl's resnet18 training at these sizes: 128,256,384"
    )
    ap.add_argument("--quick", action="store_true", help="64 px, resnet18 only, 3 steps")
    ap.add_argument("--out", type=Path, help="also write the JSON object to this file")
    a = ap.parse_args(argv)
    kw = dict(size=a.size, batch=a.batch, warmup=a.warmup, steps=a.steps)
    kw.update(cli_settings(a.encoders, None, a.quick))
    try:
        result = run_bench(a.overrides, a.naive, **kw)
        if a.sizes:
            sizes = [int(s) for s in a.sizes.split(",")]
            result["size_scaling"] = size_scaling(
                a.overrides,
                sizes,
                batch=a.batch,
                steps=kw["steps"],
                warmup=kw["warmup"],
                naive_script=a.naive,
            )
    except MedtlError as exc:
        print(f"run_bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    for row in result.get("size_scaling", []):
        print(
            f"size {row['size']}: naive {row['naive_train_img_per_s']} img/s, medtl "
            f"{row['train_img_per_s']} img/s ({row['layout']}), ratio {row['ratio']}, "
            f"cache {row['cache_mb_per_1000_images']} MB per 1000 images"
        )
    line = json.dumps(result)
    if a.out:
        a.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
