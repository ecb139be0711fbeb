"""Time to quality: wall time until validation Dice >= a target, medtl vs the naive loop.

Both sides train lesion segmentation on the same images with the same pretrained encoder
(EfficientNet-Lite0, ImageNet weights shipped offline) and are validated after every epoch
on the same validation images with the same metric (mean per-image Dice at the training
size, threshold 0.5, :func:`medtl.training.metrics.dice_per_image_torch`):

- medtl: ``medtl train -c configs/busi_seg.yaml`` (medtl's BUSI recipe: Dice+BCE, AdamW,
  cosine, standard augmentation, decode-once cache, layout probe, tuned allocator);
- naive: the loop of ``naive_baseline.py`` (``--naive PATH``; its ``SegDataset``: PIL decode and
  resize of every sample every step; BCE, Adam lr 1e-4, batch 8, fp32, no augmentation,
  glibc's default allocator) plus a validation pass per epoch, on medtl's split
  (``RUN/splits.json``) and with medtl's pretrained encoder weights loaded into the same
  ``smp.Unet("tu-tf_efficientnet_lite0")``.

Each side runs in its own process, pinned with ``taskset`` to the same CPUs with the same
thread count, one after the other; the clock of each starts at its process launch (imports,
decoding and model building included) and stops at the end of the first epoch whose
validation Dice reaches the target. A side that has not reached it after ``--max-minutes``
is stopped and reported as not reached (the ratio is then a lower bound).

Usage:
    python benchmarks/time_to_quality.py DATA [--size 128] [--target 0.70] [--threads 1]
        [--naive PATH] [--cpus 0] [--max-minutes 30] [--max-epochs 40 (naive side; medtl uses its recipe's epochs)] [--out results/ttq]
stdout: a table and, last, one JSON line; OUT/ttq.json holds the same with every epoch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from medtl._bench import locate_naive
from medtl.utils.files import read_csv

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_medtl(a: argparse.Namespace) -> dict:
    """``medtl train`` with the BUSI recipe; polls metrics.csv and stops at the target."""
    run = Path(a.out) / "medtl"
    cmd = [
        str(Path(sys.executable).with_name("medtl")),
        "train",
        "-c",
        str(REPO / "configs" / "busi_seg.yaml"),
        f"data.root={a.data}",
        f"data.image_size={a.size}",
        f"train.threads={a.threads}",
        f"output.dir={a.out}",
        "output.name=medtl",
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        pinned(cmd, a.cpus), env=thread_env(a.threads), stdout=subprocess.DEVNULL
    )
    epochs: list[dict] = []
    reached = None
    while True:
        done = proc.poll() is not None
        wall = time.perf_counter() - t0
        # metrics.csv is rewritten atomically each epoch: a read never sees half a file
        rows = [r for r in read_csv(run / "metrics.csv") if r.get("val_dice")]
        for row in rows[len(epochs) :]:
            e = {
                "epoch": int(row["epoch"]),
                "val_dice": float(row["val_dice"]),
                "wall_s": round(wall, 1),
            }
            epochs.append(e)
            log(f"medtl epoch {e['epoch']}: val_dice={e['val_dice']:.4f} at {e['wall_s']:.0f}s")
            if reached is None and e["val_dice"] >= a.target:
                reached = e
        if reached or done or wall > a.max_minutes * 60:
            break
        time.sleep(0.5)
    if proc.poll() is None:
        proc.terminate()
        proc.wait()
    return {"epochs": epochs, "reached": reached, "wall_s": round(time.perf_counter() - t0, 1)}


def run_naive(a: argparse.Namespace, splits: Path) -> dict:
    """This script's ``naive-worker`` in its own process; one JSON line per epoch."""
    cmd = [
        sys.executable,
        __file__,
        "naive-worker",
        str(a.data),
        str(splits),
        "--size",
        str(a.size),
    ]
    cmd += ["--max-epochs", str(a.max_epochs), "--naive", str(locate_naive(a.naive))]
    env = thread_env(a.threads)
    env.pop("MALLOC_MMAP_MAX_", None)  # the reference keeps glibc's default allocator
    t0 = time.perf_counter()
    proc = subprocess.Popen(pinned(cmd, a.cpus), env=env, stdout=subprocess.PIPE, text=True)
    epochs: list[dict] = []
    reached = None
    assert proc.stdout is not None
    for line in proc.stdout:
        wall = time.perf_counter() - t0
        e = json.loads(line)
        e["wall_s"] = round(wall, 1)
        epochs.append(e)
        log(f"naive epoch {e['epoch']}: val_dice={e['val_dice']:.4f} at {e['wall_s']:.0f}s")
        if e["val_dice"] >= a.target:
            reached = e
            break
        if wall > a.max_minutes * 60:
            break
    if proc.poll() is None:
        proc.terminate()
    proc.wait()
    return {"epochs": epochs, "reached": reached, "wall_s": round(time.perf_counter() - t0, 1)}


def naive_worker(data: str, splits_path: str, size: int, max_epochs: int, script: str) -> None:
    """The naive loop with a validation pass per epoch (prints one JSON line per epoch)."""
    import segmentation_models_pytorch as smp
    import torch

    from medtl.models.encoders import create_encoder
    from medtl.training.metrics import dice_per_image_torch

    spec = importlib.util.spec_from_file_location("naive_baseline", locate_naive(script))
    naive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(naive)
    torch.manual_seed(0)
    doc = json.loads(Path(splits_path).read_text())
    pairs = {str(Path(p).resolve()): (p, m) for p, m in naive.discover(data)}
    part = {k: [pairs[str(Path(e["image"]).resolve())] for e in doc[k]] for k in ("train", "val")}
    train = torch.utils.data.DataLoader(
        naive.SegDataset(part["train"], size), batch_size=8, shuffle=True
    )
    val = torch.utils.data.DataLoader(naive.SegDataset(part["val"], size), batch_size=8)
    model = smp.Unet(encoder_name="tu-tf_efficientnet_lite0", encoder_weights=None, classes=1)
    pretrained, _ = create_encoder("efficientnet-lite0", "imagenet")
    model.encoder.load_state_dict(pretrained.state_dict())  # the same ImageNet weights as medtl
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for epoch in range(max_epochs):
        model.train()
        for x, y in train:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        model.eval()
        scores = []
        with torch.no_grad():
            for x, y in val:
                scores.append(dice_per_image_torch(model(x), y))
        dice = float(torch.cat(scores).nanmean())
        print(json.dumps({"epoch": epoch, "val_dice": round(dice, 6)}), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "naive-worker":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("data")
        ap.add_argument("splits")
        ap.add_argument("--size", type=int, default=128)
        ap.add_argument("--max-epochs", type=int, default=40)
        ap.add_argument("--naive", required=True)
        w = ap.parse_args()
        naive_worker(w.data, w.splits, w.size, w.max_epochs, w.naive)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--target", type=float, default=0.70)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpus", default="0", help="taskset CPU list ('' = no pinning)")
    ap.add_argument("--max-minutes", type=float, default=30)
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--naive", help="naive_baseline.py (default: $MEDTL_NAIVE_BASELINE, ./)")
    ap.add_argument("--out", default="results/ttq")
    a = ap.parse_args()
    a.data = str(Path(a.data).resolve())
    Path(a.out).mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ours = run_medtl(a)
    theirs = run_naive(a, Path(a.out) / "medtl" / "splits.json")
    t_ours = ours["reached"]["wall_s"] if ours["reached"] else None
    t_naive = theirs["reached"]["wall_s"] if theirs["reached"] else None
    if t_ours and t_naive:
        speedup, bound = round(t_naive / t_ours, 2), "exact"
    elif t_ours:  # the naive loop never got there: at least this much faster
        speedup, bound = round(theirs["wall_s"] / t_ours, 2), "lower bound"
    else:
        speedup, bound = None, "medtl did not reach the target"
    result = {
        "started_utc": started,
        "args": vars(a),
        "target_val_dice": a.target,
        "medtl_time_to_target_s": t_ours,
        "naive_time_to_target_s": t_naive,
        "time_to_quality_speedup": speedup,
        "speedup_is": bound,
        "medtl_best_val_dice": max((e["val_dice"] for e in ours["epochs"]), default=None),
        "naive_best_val_dice": max((e["val_dice"] for e in theirs["epochs"]), default=None),
        "medtl": ours,
        "naive": theirs,
    }
    (Path(a.out) / "ttq.json").write_text(json.dumps(result, indent=1))
    for side, r in (("medtl", ours), ("naive", theirs)):
        got = r["reached"]
        print(
            f"{side:6s} epochs={len(r['epochs'])} best val_dice="
            f"{max((e['val_dice'] for e in r['epochs']), default=float('nan')):.4f} "
            + (
                f"reached {a.target} at epoch {got['epoch']} after {got['wall_s']:.0f}s"
                if got
                else "target not reached"
            )
        )
    print(json.dumps({k: v for k, v in result.items() if k not in ("medtl", "naive")}))


if __name__ == "__main__":
    main()
