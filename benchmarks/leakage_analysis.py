"""How much do duplicates inflate a naive split? (docs/results.md, experiment 3)

For a run trained on a split that ignored duplicates (data.group_duplicates=false), find
the test images that have an exact or near duplicate in the training split, and compare
their Dice with the test images that do not. Usage:
    python benchmarks/leakage_analysis.py RUN_NAIVE [RUN_GROUPED]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from medtl.data.dedup import duplicate_groups
from medtl.data.pipeline import load_samples
from medtl.metrics import aggregate
from medtl.runs.folder import read_config


def leaked_test_images(run: Path) -> tuple[set[str], int]:
    cfg = read_config(run)
    samples = load_samples(cfg).samples
    splits = json.loads((run / "splits.json").read_text())
    train = {e["image"] for e in splits["train"]}
    test = {e["image"] for e in splits["test"]}
    leaked: set[str] = set()
    for group in duplicate_groups(samples):
        paths = {str(samples[i].image) for i in group}
        if paths & train:
            leaked |= paths & test
    return leaked, len(test)


def dice_by_leak(run: Path, leaked: set[str]) -> dict[str, dict]:
    rows = list(csv.DictReader((run / "eval" / "test" / "per_image.csv").open()))
    parts = {"test images with a duplicate in train": [], "test images without": []}
    for r in rows:
        key = (
            "test images with a duplicate in train"
            if r["image"] in leaked
            else "test images without"
        )
        parts[key].append(float(r["dice"]))
    return {k: aggregate(np.array(v)) for k, v in parts.items()}


def main() -> None:
    for arg in sys.argv[1:]:
        run = Path(arg)
        leaked, n_test = leaked_test_images(run)
        print(f"{run}: {len(leaked)} of {n_test} test images have a duplicate in train")
        for name, a in dice_by_leak(run, leaked).items():
            if a["n"]:
                print(
                    f"  {name}: n={a['n']} Dice {a['mean']:.3f} (95% CI {a['ci_low']:.3f}-{a['ci_high']:.3f})"
                )


if __name__ == "__main__":
    main()
