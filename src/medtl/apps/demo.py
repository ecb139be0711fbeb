"""``medtl demo``: the main job on the embedded phantom data.

Phantoms -> 3-fold grouped cross-validation of an EfficientNet-Lite0 U-Net: ImageNet
weights frozen vs fine-tuned vs the same encoder from random init, all on identical folds
-> results table with 95% CIs and paired p-values -> ``report.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medtl.comparison import compare
from medtl.comparison.records import Results
from medtl.utils.files import atomic_write_json

log = logging.getLogger("medtl")

DEMO = {"n": 120, "size": 64, "epochs": 6, "folds": 3}
QUICK = {"n": 16, "size": 32, "epochs": 1, "folds": 2}

CELLS = [
    ["model.weights=imagenet", "model.strategy=frozen"],
    ["model.weights=imagenet", "model.strategy=finetune"],
    ["model.weights=none", "model.strategy=finetune"],
]


def run_demo(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run the comparison and write its report; returns the collected results."""
    from medtl.data.phantoms import make_phantoms
    from medtl.reporting import write_report

    s = QUICK if quick else DEMO
    out = Path(out)
    data = out / "phantoms"
    if not data.exists():
        make_phantoms(data, n=s["n"], size=s["size"], seed=0)
    base = [
        f"data.root={data}",
        f"data.image_size={s['size']}",
        f"train.epochs={s['epochs']}",
        "model.encoder=efficientnet-lite0",
        "model.arch=unet",
        "model.encoder_lr_mult=1.0",
        "train.lr=0.003",
        "train.batch_size=8",
        "train.patience=0",
        "data.augment=none",
    ]
    folder = compare(base, [], folds=s["folds"], out=out / "comparison", cell_list=CELLS)
    # compare() collected the finished cells and printed the table; reuse its results
    results = Results.read(folder)
    results = results.doc if results is not None else {}
    report = write_report(folder)
    atomic_write_json(out / "demo.json", {"settings": s, "report": str(report), "results": results})
    print(f"report: {report}")
    return results
