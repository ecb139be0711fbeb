"""``evaluate(run)``: metrics at each image's original size, per-image CSV, summary.json,
predicted masks and overlays under ``RUN/eval/<split>/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.config import Config, parse_override, set_key
from medtl.data.io import read_image, read_mask
from medtl.data.pipeline import PreparedData, make_loader, prepare
from medtl.data.splits import load_splits
from medtl.engine.cpu import threads_for
from medtl.errors import MedtlError
from medtl.inference import infer, inference_net, mask_at_size, overlay, safe_name, save_png
from medtl.io_utils import atomic_write_json, atomic_write_text, csv_text
from medtl.metrics import (
    EMPTY_RULE_TEXT,
    aggregate,
    classification_report_rows,
    classification_report_text,
    classification_scores,
    seg_scores,
)
from medtl.runs import load_bundle

log = logging.getLogger("medtl")
SEG_KEYS = ("dice", "iou", "precision", "recall", "hd95")
# the settings a user may change when evaluating a run: where and on how many processes
PROCESS_KEYS = (
    "train.devices",
    "train.num_nodes",
    "train.accelerator",
    "train.strategy",
    "train.threads",
)


def _apply_process_overrides(cfg: Config, overrides: list[str]) -> None:
    """Evaluation runs in one CPU process unless ``overrides`` ask for more; how the run was
    trained (e.g. 2 GPUs) does not decide it."""
    cfg.train.devices, cfg.train.num_nodes = 1, 1
    cfg.train.accelerator, cfg.train.strategy = "cpu", "auto"
    for text in overrides:
        key, value = parse_override(text)
        if key not in PROCESS_KEYS:
            raise MedtlError(
                f"evaluate takes only {', '.join(PROCESS_KEYS)}; '{key}' belongs to training "
                "(the run's config.yaml is used as it is)"
            )
        set_key(cfg, key, value)


def _launch(cfg: Config):
    """A Lightning Fabric (DDP) when ``train.devices x train.num_nodes > 1``, else None.

    Launched by Fabric itself (it re-runs this command once per extra local process), by
    ``torchrun`` or by SLURM, exactly like training.
    """
    t = cfg.train
    if t.devices * t.num_nodes == 1 and t.accelerator == "cpu":
        return None
    from lightning.fabric import Fabric

    strategy = "ddp" if t.strategy == "auto" else t.strategy
    fabric = Fabric(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy
    )
    fabric.launch()
    return fabric


def _gather(records: list[dict[str, Any]], fabric) -> list[dict[str, Any]]:
    """Every rank's records on every rank (one process: unchanged), in split order."""
    if fabric is None or fabric.world_size == 1:
        return records
    import torch.distributed as dist

    parts: list[Any] = [None] * fabric.world_size
    dist.all_gather_object(parts, records)
    return sorted((r for part in parts for r in part), key=lambda r: r["position"])


def _choose_split(run: Path, data: PreparedData, split: str) -> tuple[str, list[int]]:
    splits = load_splits(run / "splits.json", data.dataset.samples)
    if split == "auto":
        split = "test" if splits.get("test") else "val"
    if split == "all":
        return split, list(range(len(data.dataset.samples)))
    if not splits.get(split):
        raise MedtlError(
            f"{run}/splits.json has no '{split}' images; use --split val (or train/all)"
        )
    return split, splits[split]


def evaluate(
    run: str | Path,
    data: str | Path | None = None,
    split: str = "auto",
    tta: bool = False,
    save_images: int = 64,
    plots: bool = True,
    overrides: list[str] | None = None,
    optimise: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained run; returns the summary dict (also written to summary.json).

    ``overrides`` may set :data:`PROCESS_KEYS`: with ``train.devices=N`` (and/or
    ``train.num_nodes``) the images are sharded over N DDP processes, the per-image rows
    are gathered, and rank 0 writes exactly what one process would write.

    ``data`` evaluates on another folder (all its images, labelled by the run's classes);
    otherwise ``split`` of the run's own splits.json is used. Masks are compared at the
    image's original resolution. ``save_images`` caps the overlays written (masks: all);
    ``plots=False`` skips the figures (e.g. inside a comparison grid). ``optimise=False``
    runs the eager network instead of the CPU-optimised one
    (:func:`medtl.inference.inference_net`: Conv-BN folded, channels_last).
    """
    run = Path(run)
    net, cfg, classes = load_bundle(run)
    _apply_process_overrides(cfg, list(overrides or []))
    with threads_for(cfg):
        fabric = _launch(cfg)
        device = fabric.device if fabric is not None else torch.device("cpu")
        net = inference_net(net.to(device), device, optimise)
        prepared, split, indices = _eval_data(run, cfg, classes, data, split)
        out_dir = run / "eval" / split
        records = _gather(
            _predict_records(
                net, cfg, prepared, indices, classes, out_dir, tta, save_images, device
            ),
            fabric,
        )
    summary: dict[str, Any] = {
        "run": str(run),
        "split": split,
        "n_images": len(records),
        "tta": tta,
        "inference": net.describe() if hasattr(net, "describe") else "eager",
        "task": cfg.task,
        "out_dir": str(out_dir),
    }
    if fabric is not None and fabric.world_size > 1:
        summary["processes"] = fabric.world_size
    if fabric is not None and fabric.global_rank != 0:
        return {**summary, "rank": fabric.global_rank}  # rank 0 writes the files
    _write_results(run, cfg, records, classes, summary, out_dir, plots)
    return summary


def _eval_data(
    run: Path, cfg: Config, classes: list[str], data: str | Path | None, split: str
) -> tuple[PreparedData, str, list[int]]:
    """The images to evaluate: all of another folder (``data``, labelled by the run's
    classes) or ``split`` of the run's splits.json."""
    cfg.data.group_duplicates = False  # grouping only matters for splitting
    prepared = prepare(cfg, root=data)
    if data is None:
        return prepared, *_choose_split(run, prepared, split)
    prepared.labels = [
        classes.index(s.label) if s.label in classes else -1 for s in prepared.dataset.samples
    ]
    return prepared, "external", list(range(len(prepared.dataset.samples)))


def _write_results(
    run: Path,
    cfg: Config,
    records: list[dict[str, Any]],
    classes: list[str],
    summary: dict[str, Any],
    out_dir: Path,
    plots: bool,
) -> None:
    """Fill ``summary`` with the aggregate metrics and write per_image.csv, the
    classification report, the plots and summary.json."""
    rows = [r["row"] for r in records]
    probs_all = [r["probs"] for r in records if r["probs"] is not None]
    y_all = [r["label"] for r in records if r["probs"] is not None]
    cases = {p: r["case"] for p, r in enumerate(records) if r["case"] is not None}
    if cfg.task != "classification":
        summary.update(_seg_summary(rows, cfg))
    if cfg.task != "segmentation" and probs_all:
        known = [i for i, y in enumerate(y_all) if y >= 0]
        scores = classification_scores(
            np.array([y_all[i] for i in known]), np.stack([probs_all[i] for i in known]), classes
        )
        summary["classification"] = scores
        atomic_write_text(
            out_dir / "classification_report.txt", classification_report_text(scores, classes)
        )
        atomic_write_text(
            out_dir / "classification_report.csv",
            csv_text(classification_report_rows(scores, classes)),
        )
    atomic_write_text(out_dir / "per_image.csv", csv_text(rows))
    if plots:
        write_plots(run, out_dir, rows, cases, summary, probs_all, y_all, classes)
    atomic_write_json(out_dir / "summary.json", summary)


def _seg_summary(rows: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """Segmentation aggregates (and per class, when the images have classes)."""
    out: dict[str, Any] = {
        "empty_mask_rule": EMPTY_RULE_TEXT[cfg.train.empty_mask],
        "segmentation": {k: aggregate([r[k] for r in rows]) for k in SEG_KEYS},
    }
    if cfg.task == "multitask" or any(r.get("class") for r in rows):
        out["segmentation_per_class"] = {
            c: {k: aggregate([r[k] for r in rows if r["class"] == c]) for k in ("dice", "iou")}
            for c in sorted({r["class"] for r in rows if r.get("class")})
        }
    return out


def write_plots(
    run: Path,
    out_dir: Path,
    rows: list[dict[str, Any]],
    cases: dict[int, Any],
    summary: dict[str, Any],
    probs: list,
    y_true: list,
    classes: list[str],
) -> list[Path]:
    """The evaluation plots: learning curves, confusion matrix, ROC, Dice histogram,
    best/median/worst overlay grid and predictions.gif (those the task has)."""
    from medtl import plots

    written = []
    if (run / "metrics.csv").is_file():
        written.append(plots.learning_curves(run / "metrics.csv", out_dir / "learning_curves.png"))
    cls = summary.get("classification")
    if cls:
        written.append(
            plots.confusion_matrix_plot(
                cls["confusion_matrix"], classes, out_dir / "confusion_matrix.png"
            )
        )
        known = [i for i, y in enumerate(y_true) if y >= 0]
        if len({y_true[i] for i in known}) >= 2:
            written.append(
                plots.roc_plot(
                    np.array([y_true[i] for i in known]),
                    np.stack([probs[i] for i in known]),
                    classes,
                    out_dir / "roc.png",
                )
            )
    if "segmentation" in summary:
        dice = [r["dice"] for r in rows]
        by_class: dict[str, list[float]] = {}
        for r in rows:
            if r.get("class"):
                by_class.setdefault(r["class"], []).append(r["dice"])
        written.append(
            plots.dice_histogram(dice, out_dir / "dice_histogram.png", by_class=by_class or None)
        )
        picked = plots.select_cases(dice, k=4)
        items, frames = [], []
        for group in ("best", "median", "worst"):
            for i in picked[group]:
                image, pred, truth = cases[i]
                caption = f"{group}: {Path(rows[i]['image']).stem} Dice {rows[i]['dice']:.2f}"
                items.append((caption, overlay(image, pred, truth)))
                frames.append((image, pred, truth, caption))
        if items:
            written.append(plots.overlay_grid(items, out_dir / "overlays_grid.png"))
            written.append(plots.predictions_gif(frames, out_dir / "predictions.gif"))
    return written


def _predict_records(
    net,
    cfg: Config,
    prepared: PreparedData,
    indices: list[int],
    classes: list[str],
    out_dir: Path,
    tta: bool,
    save_images: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    """One record per image of this process's shard: its position in ``indices``, the
    per-image CSV row, class probabilities, label and best/worst-grid thumbnail. Predicted
    masks (and overlays for the first ``save_images`` positions) are written here."""
    loader = make_loader(prepared, indices, cfg, train=False)
    samples = prepared.dataset.samples
    position = {idx: p for p, idx in enumerate(indices)}
    records: list[dict[str, Any]] = []
    for x, _, label, rows_idx in loader:
        out = {k: v.float().cpu() for k, v in infer(net, x.to(device), tta).items()}
        for j, idx in enumerate(rows_idx.tolist()):
            if idx < 0:
                continue  # padding that evens out the shards of several processes
            s = samples[idx]
            row: dict[str, Any] = {"image": str(s.image), "class": s.label or ""}
            rec: dict[str, Any] = {"position": position[idx], "probs": None, "case": None}
            if "cls" in out:
                p = torch.softmax(out["cls"][j], 0).numpy()
                row["prediction"] = classes[int(p.argmax())]
                row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
                rec["probs"], rec["label"] = p, int(label[j])
            if "seg" in out:
                h, w = prepared.cache.sizes[idx]
                pred = mask_at_size(out["seg"][j], h, w)
                truth = read_mask(s.masks, (h, w))
                row.update(
                    {
                        k: round(v, 6) if np.isfinite(v) else float("nan")
                        for k, v in seg_scores(pred, truth, empty=cfg.train.empty_mask).items()
                    }
                )
                row["pred_area"] = int(pred.sum())
                row["true_area"] = int(truth.sum())
                name = safe_name(f"{s.label + '_' if s.label else ''}{s.image.stem}")
                save_png(out_dir / "predictions" / f"{name}_pred.png", pred)
                image = read_image(s.image)
                if rec["position"] < save_images:
                    save_png(out_dir / "overlays" / f"{name}.png", overlay(image, pred, truth))
                rec["case"] = _thumbnail(image, pred, truth)
            rec["row"] = row
            records.append(rec)
    return records


def _thumbnail(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, side: int = 192):
    """Downscaled copies kept in memory for the case grid and GIF (nearest for masks)."""
    h, w = pred.shape
    step = max(1, int(np.ceil(max(h, w) / side)))
    return image[::step, ::step], pred[::step, ::step], truth[::step, ::step]


def format_summary(summary: dict[str, Any]) -> str:
    """A few human lines: n, Dice/IoU (mean ± std, 95% CI), accuracy/F1, the empty-mask rule."""
    lines = [f"{summary['run']} [{summary['split']}] {summary['n_images']} images"]
    seg = summary.get("segmentation")
    if seg:
        for k in ("dice", "iou", "hd95"):
            a = seg[k]
            lines.append(
                f"  {k:5s} {a['mean']:.4f} ± {a['std']:.4f}  (95% CI {a['ci_low']:.4f}-{a['ci_high']:.4f}, n={a['n']})"
            )
        lines.append(f"  empty masks: {summary['empty_mask_rule']}")
    cls = summary.get("classification")
    if cls:
        lines.append(
            f"  accuracy {cls['accuracy']:.4f}  balanced {cls['balanced_accuracy']:.4f}  "
            f"macro-F1 {cls['macro_avg']['f1']:.4f}  AUROC {cls['auroc_macro']:.4f}"
        )
    return "\n".join(lines)
