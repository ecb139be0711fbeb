"""The command-line options of evaluate's decisions, kept out of :mod:`.parser`:
``evaluate --calibrate / --youden / --sensitivity / --specificity / --positive / --hd95 /
--seg-threshold``
and ``predict --threshold / --positive / --mask-format``. Each ``*_options`` function turns the parsed
namespace into keyword arguments for :mod:`medtl.api` (empty when none was given, so the
ensemble paths, which take none of them, are not handed any)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_evaluate_options", "add_predict_options", "evaluate_options", "predict_options"]


def add_evaluate_options(sp: argparse.ArgumentParser) -> None:
    """Calibration, operating point and HD95-definition options of ``medtl evaluate``."""
    g = sp.add_argument_group("decisions fitted on the validation split (RUN/calibration.json)")
    g.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a temperature on val (min NLL); predict and export apply it from then on",
    )
    rule = g.add_mutually_exclusive_group()
    rule.add_argument("--youden", action="store_true", help="operating point: Youden's J on val")
    rule.add_argument(
        "--sensitivity", type=float, metavar="S", help="operating point: sensitivity >= S on val"
    )
    rule.add_argument(
        "--specificity", type=float, metavar="S", help="operating point: specificity >= S on val"
    )
    g.add_argument(
        "--positive", metavar="CLASS", help="positive class (default: the second of two)"
    )
    g.add_argument(
        "--seg-threshold",
        metavar="auto|T",
        help="mask threshold of a binary segmentation head: auto = max mean val Dice over "
        "0.30..0.70, or a probability; predict applies it from then on (default 0.5)",
    )
    sp.add_argument(
        "--hd95",
        default="pooled",
        metavar="DEFINITION",
        help="HD95 definition: pooled (medpy, default) or max_directed (MONAI); checked "
        "against medtl.metrics.surface.HD95_DEFINITIONS before anything is read",
    )


def evaluate_options(a: argparse.Namespace) -> dict[str, Any]:
    """``decide=Decisions(...)`` for :func:`medtl.api.evaluate`, when an option was given."""
    from medtl.evaluation.calibrate import Decisions
    from medtl.evaluation.threshold import parse_seg_threshold
    from medtl.metrics.surface import check_hd95_definition

    check_hd95_definition(a.hd95)  # ConfigError (exit 2) naming the definitions

    rule, target = None, None
    if a.youden:
        rule = "youden"
    elif a.sensitivity is not None:
        rule, target = "sensitivity", a.sensitivity
    elif a.specificity is not None:
        rule, target = "specificity", a.specificity
    seg_t = parse_seg_threshold(getattr(a, "seg_threshold", None))
    d = Decisions(a.calibrate, rule, target, a.positive, a.hd95, seg_t)
    return {"decide": d} if d.wanted() or d.hd95 != "pooled" else {}


def add_predict_options(sp: argparse.ArgumentParser) -> None:
    """``--threshold`` and ``--positive`` of ``medtl predict``."""
    sp.add_argument(
        "--threshold",
        metavar="T|stored",
        help="call the positive class when its probability >= T (stored: the operating point "
        "'evaluate --youden/--sensitivity' chose); default argmax",
    )
    sp.add_argument(
        "--positive", metavar="CLASS", help="class --threshold decides (default: second of two)"
    )
    sp.add_argument(
        "--mask-format",
        default="png",
        choices=["png", "seg"],
        help="seg: also a DICOM SEG (<name>_seg.dcm) of each DICOM input, referencing it",
    )


def predict_options(a: argparse.Namespace) -> dict[str, Any]:
    """``threshold`` / ``positive`` / ``mask_format`` keywords for predict, when given
    (``mask_format`` only when not png)."""
    fmt = a.mask_format if a.mask_format != "png" else None
    given = (("threshold", a.threshold), ("positive", a.positive), ("mask_format", fmt))
    return {k: v for k, v in given if v}
