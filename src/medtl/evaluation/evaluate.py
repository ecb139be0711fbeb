"""``evaluate(run)``: metrics at each image's original size, per-image CSV, summary.json,
predicted masks and overlays under ``RUN/eval/<split>/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.configuration.loading import Config
from medtl.data.cache.decode import read_originals
from medtl.data.masks.scheme import MaskScheme
from medtl.data.pipeline import PreparedData, make_loader, prepare
from medtl.data.readers.io import pixel_cap
from medtl.data.readers.volumes import volume_scores
from medtl.data.splits import load_splits
from medtl.evaluation.calibrate import Decisions, decision_summary, fit_decisions
from medtl.evaluation.figures import write_plots
from medtl.evaluation.labels import label_lines, label_summary, score_row
from medtl.evaluation.leak_free import leak_free_lines, leak_free_summary
from medtl.evaluation.output import staging_folder, writer_lock
from medtl.evaluation.postprocess import postprocess_lines, postprocess_summary, scored
from medtl.evaluation.processes import (
    apply_process_overrides,
    gather_records,
    launch_fabric,
)
from medtl.evaluation.segmentation import SegScorer, seg_extra_lines, seg_extra_summary
from medtl.evaluation.split_loss import mean_loss, split_losses
from medtl.evaluation.threshold import threshold_lines, threshold_summary
from medtl.inference.decisions import read_calibration, threshold_value
from medtl.inference.engine import (
    infer,
    inference_net,
    mask_at_size,
    overlay,
    safe_name,
    save_mask,
    save_png,
)
from medtl.inference.postprocess import parse_rule
from medtl.metrics import (
    EMPTY_RULE_TEXT,
    aggregate,
    check_finite_output,
    classification_report_rows,
    classification_report_text,
    classification_scores,
    decision_lines,
    diagnostic_lines,
)
from medtl.runs.checkpoints import load_into
from medtl.runs.folder import load_bundle, run_scheme
from medtl.runs.model_card import card_inputs
from medtl.runs.records import SUMMARY_FILE, EvalSummary, write_summary
from medtl.runtime.cpu import threads_for
from medtl.runtime.device import resolve_device
from medtl.training.loggers import log_run_artifacts
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_text, csv_text, swap_in
from medtl.utils.parallel import progress

log = logging.getLogger("medtl")
SEG_KEYS = ("dice", "iou", "precision", "recall", "hd95")


def _choose_split(run: Path, data: PreparedData, split: str) -> tuple[str, list[int]]:
    splits = load_splits(run / "splits.json", data.dataset.samples)
    if split == "auto":
        split = "test" if splits.get("test") else "val"
    if split == "all":
        return split, list(range(len(data.dataset.samples)))
    if not splits.get(split):
        held_out = [k for k in ("test", "val") if splits.get(k)]
        fix = f"--split {held_out[0]}" if held_out else "--data DIR (new images; --split all)"
        what = "" if held_out else " (a final model: every image trained it)"
        raise MedtlError(f"{run}/splits.json has no '{split}' images{what}; use {fix}")
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
    checkpoint: str = "best",
    decide: Decisions | None = None,
    postprocess: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate a trained run; returns the summary dict (also written to summary.json).

    ``checkpoint``: ``best`` (``RUN/model.pt``, the best epoch), ``last``
    (``RUN/checkpoints/last.ckpt``) or a path to a ``.ckpt`` of this run; other than
    ``best``, results go to ``eval/<split>-<checkpoint name>``. The summary holds the
    split's mean loss (the training loss, without class weights) as ``loss``.

    ``overrides`` may set :data:`medtl.evaluation.processes.PROCESS_KEYS`: with ``train.devices=N`` (and/or
    ``train.num_nodes``) the images are sharded over N DDP processes, the per-image rows
    are gathered, and rank 0 writes exactly what one process would write.

    ``data`` evaluates on another folder (all its images, labelled by the run's classes);
    otherwise ``split`` of the run's own splits.json is used. Masks are compared at the
    image's original resolution. ``save_images`` caps the overlays written (masks: all);
    ``plots=False`` skips the figures (e.g. inside a comparison grid). ``optimise=False``
    runs the eager network instead of the CPU-optimised :func:`~medtl.inference.engine.inference_net`.
    ``decide``: fits on val first, HD95 (:class:`~medtl.evaluation.calibrate.Decisions`); ``postprocess``:
    a rule of :mod:`medtl.inference.postprocess` (``dice_raw``: Dice before it); ``device``: ``auto`` = CUDA, else MPS, else CPU.
    """
    run = Path(run)
    card_inputs(run)  # the files the model card reads afterwards: refused before any write
    read_calibration(run)  # a damaged calibration.json is refused before the data is read
    net, cfg, classes = load_bundle(run)
    ckpt_name = load_into(net, run, checkpoint)
    apply_process_overrides(cfg, list(overrides or []), device)
    scheme = run_scheme(cfg)  # the masks' meaning as training decided it: no file is scanned
    with writer_lock(run), threads_for(cfg), pixel_cap(cfg.data.max_pixels):
        fabric = launch_fabric(cfg)
        dev = fabric.device if fabric is not None else resolve_device(cfg.train.accelerator)
        net = inference_net(net.to(dev), dev, optimise)
        prepared, split, indices = _eval_data(run, cfg, classes, data, split, scheme)
        own = None if data else prepared
        doc = fit_decisions(run, net, cfg, classes, own, dev, tta, decide, scheme)
        out_dir = run / "eval" / (split if ckpt_name == "best" else f"{split}-{ckpt_name}")
        staging = staging_folder(out_dir, fabric)  # replaces out_dir as a whole when complete
        options = (tta, save_images, dev, decide, postprocess, threshold_value(doc))
        rows = _predict_records(net, cfg, prepared, indices, classes, staging, *options)
        records = gather_records(rows, fabric)
        summary = {
            **dict(run=str(run), split=split, n_images=len(records), tta=tta, task=cfg.task),
            "inference": net.describe() if hasattr(net, "describe") else "eager",
            **dict(out_dir=str(out_dir), checkpoint=ckpt_name, loss=mean_loss(records)),
            "postprocess": parse_rule(postprocess),  # popped into Dice before/after
            **threshold_summary(doc),  # a stored mask threshold (medtl.evaluation.threshold)
        }
        return _finish(run, cfg, records, classes, plots, fabric, staging, summary, scheme)


def _finish(
    run: Path,
    cfg: Config,
    records: list[dict[str, Any]],
    classes: list[str],
    plots: bool,
    fabric,
    staging: Path,
    summary: dict[str, Any],
    scheme: MaskScheme,
) -> dict[str, Any]:
    """Rank 0 writes the results into ``staging`` and swaps it in; the model card follows."""
    out_dir = Path(summary["out_dir"])
    if fabric is not None and fabric.world_size > 1:
        summary["processes"] = fabric.world_size
    if fabric is not None and fabric.global_rank != 0:
        return {**summary, "rank": fabric.global_rank}  # rank 0 writes the files
    _write_results(run, cfg, records, classes, summary, staging, plots, scheme)
    swap_in(staging, out_dir)  # summary.json was written last: the folder is complete
    log_run_artifacts(run, [out_dir], f"eval/{out_dir.name}")  # train.logger=mlflow
    from medtl.runs.model_card import write_model_card

    write_model_card(run)  # reads the summary.json just written
    return summary


def _eval_data(
    run: Path,
    cfg: Config,
    classes: list[str],
    data: str | Path | None,
    split: str,
    scheme: MaskScheme,
) -> tuple[PreparedData, str, list[int]]:
    """The images to evaluate: all of another folder (``data``, labelled by the run's
    classes) or ``split`` of the run's splits.json; masks read by the run's ``scheme``."""
    cfg.data.group_duplicates = False  # grouping only matters for splitting
    prepared = prepare(cfg, root=data, scheme=scheme)
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
    scheme: MaskScheme,
) -> None:
    """Fill ``summary`` with the aggregate metrics (per label by ``scheme``) and write
    per_image.csv, the classification report, the plots and summary.json."""
    rows = [r["row"] for r in records]
    probs_all = [r["probs"] for r in records if r["probs"] is not None]
    y_all = [r["label"] for r in records if r["probs"] is not None]
    cases = {p: r["case"] for p, r in enumerate(records) if r["case"] is not None}
    if cfg.task != "classification":
        summary.update(_seg_summary(rows, cfg, scheme), **seg_extra_summary(records))
    if cfg.task != "segmentation" and probs_all:
        known = [i for i, y in enumerate(y_all) if y >= 0]
        scores = classification_scores(
            np.array([y_all[i] for i in known]), np.stack([probs_all[i] for i in known]), classes
        )
        summary["classification"] = scores
        summary.update(decision_summary(run, records, classes))  # RUN/calibration.json's
        atomic_write_text(
            out_dir / "classification_report.txt", classification_report_text(scores, classes)
        )
        atomic_write_text(
            out_dir / "classification_report.csv",
            csv_text(classification_report_rows(scores, classes)),
        )
    atomic_write_text(out_dir / "per_image.csv", csv_text(rows))
    per_volume = volume_scores(rows)  # volumes layout: 3-D Dice beside the per-slice numbers
    if per_volume:
        dice_3d = [v["dice_3d"] for v in per_volume]
        summary["volumes"] = {"n": len(per_volume), "dice_3d_mean": float(np.mean(dice_3d))}
        atomic_write_text(out_dir / "per_volume.csv", csv_text(per_volume))
    if plots:
        write_plots(run, out_dir, rows, cases, summary, probs_all, y_all, classes)
    if plots and "classification" in summary:
        from medtl.inference.explain import write_cam_grid

        write_cam_grid(run, rows, out_dir)  # skipped, with a log line, without [explain]
    summary.update(postprocess_summary(rows, summary.pop("postprocess", None)))
    summary.update(leak_free_summary(run, summary["split"], rows))  # RUN/leaks.json
    write_summary(out_dir / SUMMARY_FILE, summary)


def _seg_summary(rows: list[dict[str, Any]], cfg: Config, scheme: MaskScheme) -> dict[str, Any]:
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
    out.update(label_summary(rows, scheme))  # several mask labels
    return out


def _check_finite(out: dict[str, torch.Tensor], rows: list[int], samples: list) -> None:
    """NaN or Inf in a model output is an error naming the image: ``argmax`` takes NaN as
    the maximum and the mask threshold as background, so it would otherwise score silently."""
    what = {"cls": "class scores", "seg": "mask probabilities"}
    for key, v in out.items():
        for j, idx in enumerate(rows):
            if idx >= 0:
                check_finite_output(v[j].numpy(), str(samples[idx].image), what.get(key, key))


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
    decide: Decisions | None = None,
    postprocess: str | None = None,
    seg_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One record per image of this process's shard: its position in ``indices``, the
    per-image CSV row, class probabilities, label and best/worst-grid thumbnail. Predicted
    masks (and overlays for the first ``save_images`` positions) are written here."""
    loader = make_loader(prepared, indices, cfg, train=False)
    ds, samples = prepared.dataset, prepared.dataset.samples
    scheme = ds.mask_scheme or MaskScheme("binary")  # label maps: per label too
    scorer = SegScorer.of(cfg, scheme, samples, indices, decide)  # lesions, HD95/MSD mm or px
    position = {idx: p for p, idx in enumerate(indices)}
    records: list[dict[str, Any]] = []
    for x, mask, label, rows_idx in progress(loader, len(loader), "evaluating"):
        out = {k: v.float().cpu() for k, v in infer(net, x.to(device), tta).items()}
        # the batch's images and masks at their original size, decoded in parallel
        rows = [i for i in rows_idx.tolist() if i >= 0] if "seg" in out else []
        originals = read_originals(samples, rows, ds.window, ds.fallback_window, ds.mask_scheme)
        _check_finite(out, rows_idx.tolist(), samples)
        losses = split_losses(cfg, out, mask, label, scheme.multilabel)
        for j, idx in enumerate(rows_idx.tolist()):
            if idx < 0:
                continue  # padding that evens out the shards of several processes
            s = samples[idx]
            row: dict[str, Any] = {"image": str(s.image), "class": s.label or ""}
            rec: dict[str, Any] = {"position": position[idx], "probs": None, "case": None}
            rec["loss"] = losses[j]
            if "cls" in out:
                p = torch.softmax(out["cls"][j], 0).numpy()
                row["prediction"] = classes[int(p.argmax())]
                row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
                rec["probs"], rec["label"] = p, int(label[j])
                rec["logits"] = out["cls"][j].numpy()  # temperature scaling's input
            if "seg" in out:
                h, w = prepared.cache.sizes[idx]
                pred = mask_at_size(out["seg"][j], h, w, seg_threshold, scheme.multilabel)
                image, truth = originals[idx]
                pred = scored(pred, truth, postprocess, row, scheme, cfg.train.empty_mask)
                row.update(score_row(scorer, idx, pred, truth, scheme, cfg.train.empty_mask))
                rec["seg_facts"] = scorer.facts()
                row.update(pred_area=int((pred > 0).sum()), true_area=int((truth > 0).sum()))
                name = safe_name(f"{s.label + '_' if s.label else ''}{s.image.stem}")
                save_mask(out_dir / "predictions" / f"{name}_pred.png", pred, scheme)
                shown = scheme.shown(pred), scheme.shown(truth)  # structures: one label each
                if rec["position"] < save_images:
                    save_png(out_dir / "overlays" / f"{name}.png", overlay(image, *shown))
                rec["case"] = _thumbnail(image, *shown)
            rec["row"] = row
            records.append(rec)
    return records


def _thumbnail(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, side: int = 192):
    """Downscaled copies kept in memory for the case grid and GIF (nearest for masks)."""
    h, w = pred.shape
    step = max(1, int(np.ceil(max(h, w) / side)))
    return image[::step, ::step], pred[::step, ::step], truth[::step, ::step]


def format_summary(summary: EvalSummary) -> str:
    """A few human lines of an evaluation summary (:class:`~medtl.runs.records.EvalSummary`,
    e.g. :func:`~medtl.runs.records.read_summary` of a summary.json): n, Dice/IoU (mean ±
    std, 95% CI), accuracy/F1, the empty-mask rule. Each block's own lines (lesions,
    threshold, labels, post-processing, leak-free subset) read the record's typed blocks
    (:mod:`medtl.runs.summary_blocks`); the decision lines its calibration and operating
    point blocks."""
    lines = [f"{summary.run} [{summary.split}] {summary.n_images} images"]
    if summary.checkpoint != "best":
        lines[0] += f" (checkpoint {summary.checkpoint})"
    if summary.loss is not None:
        lines.append(f"  loss  {summary.loss:.4f} (mean per image)")
    seg = summary.segmentation
    if seg:
        unit = {"hd95": f" {summary.distance_unit}"}
        for k in ("dice", "iou", "hd95"):
            a = seg[k]
            lines.append(
                f"  {k:5s} {a['mean']:.4f}{unit.get(k, '')} ± {a['std']:.4f}  (95% CI {a['ci_low']:.4f}-{a['ci_high']:.4f}, n={a['n']})"
            )
        lines += seg_extra_lines(summary) + threshold_lines(summary) + label_lines(summary)
        lines.append(f"  empty masks: {summary.empty_mask_rule}")
    lines += postprocess_lines(summary) + leak_free_lines(summary)  # leak-free: no train twin
    if summary.volumes:
        v = summary.volumes
        lines.append(f"  3-D Dice per volume: mean {v['dice_3d_mean']:.4f} (n={v['n']} volumes)")
    cls = summary.classification
    if cls:
        lines.append(
            f"  accuracy {cls['accuracy']:.4f}  balanced {cls['balanced_accuracy']:.4f}  "
            f"macro-F1 {cls['macro_avg']['f1']:.4f}  AUROC {cls['auroc_macro']:.4f}"
        )
        lines.append("  per class, one-vs-rest at argmax [95% Wilson CI]:")
        decisions = {
            "split": summary.split,
            "calibration": summary.calibration,
            "operating_points": summary.operating_points,
        }
        lines += diagnostic_lines(cls) + decision_lines(decisions)
    return "\n".join(lines)
