"""Per-class Dice / IoU / HD95 (mean and 95% bootstrap CI over held-out images) of every
finished configuration of a `medtl compare --folds K` folder, as a Markdown table.

Usage: python benchmarks/cv_breakdown.py results/busi/seg_cv5
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from medtl.metrics import aggregate


def rows_of(folder: Path, runs: list[str]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for run in runs:
        with (folder / run / "eval" / "val" / "per_image.csv").open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def main(folder: Path) -> None:
    results = json.loads((folder / "results.json").read_text())
    print("| configuration | class | n | Dice (95% CI) | IoU | HD95 px (95% CI) |")
    print("|---|---|---:|---|---|---|")
    for c in results["configs"]:
        rows = rows_of(folder, c["runs"])
        for cls in ["all", *sorted({r["class"] for r in rows})]:
            sel = [r for r in rows if cls == "all" or r["class"] == cls]
            d, i, h = (aggregate([float(r[k]) for r in sel]) for k in ("dice", "iou", "hd95"))
            print(
                f"| {c['configuration']} | {cls} | {len(sel)} | {d['mean']:.3f} "
                f"({d['ci_low']:.3f}-{d['ci_high']:.3f}) | {i['mean']:.3f} | "
                f"{h['mean']:.1f} ({h['ci_low']:.1f}-{h['ci_high']:.1f}) |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
