"""Fold ensembles: the K fold models of one configuration used as one model.

After ``medtl compare ... --folds K`` a configuration (a *cell*) holds K run folders
``CMP/cells/<cell>/fold<k>/``. :class:`FoldEnsemble` runs the K networks on the same
batch and averages their probabilities (sigmoid per pixel for a one-channel mask, softmax
over channels for a label map and for classes); it returns the logits of that mean, so it
is just another network for the single-run code paths: :func:`medtl.inference.engine.infer` (optional flip TTA), the evaluation of
:mod:`medtl.evaluation.evaluate` (masks mapped to each image's original size and scored there) and
:func:`medtl.inference.predictor.write_predictions`. The mean is taken at the networks' resolution
(the folds share ``data.image_size``); the mean's logits are then resized to each
image's original size exactly as a single model's are.

- ``medtl evaluate CMP --config N`` -> ``CMP/cells/<cell>/ensemble/eval/test/`` (the
  held-out test split; ``--split val`` scores the folds' own val images, which each
  member but one trained on, so only the test split is a fair score);
- ``medtl predict CMP --config N INPUT...`` -> masks/overlays/predictions.csv;
- ``medtl export CMP --config N`` -> one ONNX graph of the K members and their mean
  (:mod:`medtl.exporting.ensemble`), which ``medtl predict CMP --config N --onnx`` runs.

``N`` is the rank in ``results.json`` (1 = best), a cell id, or a cell folder path.

Example::

    from medtl.comparison.ensemble import evaluate_ensemble
    summary = evaluate_ensemble("cmp", "1")      # the best configuration's K folds
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from medtl.comparison.design import read_design
from medtl.comparison.records import RESULTS_FILE, Results
from medtl.configuration.loading import Config
from medtl.evaluation.class_offsets import OFFSETS_FILE, offsets_of, offsets_text
from medtl.runs.folder import load_bundle, run_scheme
from medtl.utils.errors import MedtlError

__all__ = [
    "ENSEMBLE_DIR",
    "FoldEnsemble",
    "evaluate_cell_ensemble",
    "evaluate_ensemble",
    "fold_runs",
    "is_cell_folder",
    "load_ensemble",
    "mean_probability_logits",
    "predict_ensemble",
    "resolve_cell",
]

log = logging.getLogger("medtl")
ENSEMBLE_DIR = "ensemble"


def _logsumexp0(x: torch.Tensor) -> torch.Tensor:
    """``log(sum_k exp(x_k))`` over dim 0, max-shifted (written out, so every ONNX runtime
    computes it the same stable way)."""
    m = x.amax(0)
    return m + torch.log(torch.exp(x - m).sum(0))


def _log_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(z))`` without underflow: ``min(z, 0) - log(1 + exp(-|z|))``."""
    return torch.clamp(z, max=0.0) - torch.log1p(torch.exp(-z.abs()))


def mean_probability_logits(logits: list[torch.Tensor], sigmoid: bool) -> torch.Tensor:
    """The logits of the members' mean probability, computed in log space (no probability
    is rounded to 0 or 1 on the way, so the result is as well-conditioned as the members').

    ``sigmoid``: per-channel ``logit(mean_k sigmoid(z_k))`` =
    ``log sum_k sigmoid(z_k) - log sum_k sigmoid(-z_k)`` (one-channel masks); otherwise
    ``log(mean_k softmax(z_k))`` over dim 1 (classes, or background + labels of a
    label-map run), whose softmax is that mean."""
    z = torch.stack([t.float() for t in logits])
    if sigmoid:
        return _logsumexp0(_log_sigmoid(z)) - _logsumexp0(_log_sigmoid(-z))
    return _logsumexp0(torch.log_softmax(z, dim=2)) - math.log(len(logits))


class FoldEnsemble(torch.nn.Module):
    """K networks as one: ``forward(x)`` returns the keys the members have, each the
    logits of the mean probability (:func:`mean_probability_logits`): ``"seg"`` =
    ``logit(mean_k sigmoid(seg_k))`` for a one-channel mask, ``log(mean_k softmax(seg_k))``
    for a label-map head; ``"cls"`` = ``log(mean_k softmax(cls_k))``. Thresholding at 0.5,
    argmax and softmax downstream therefore act on the mean probability. ``offsets``: one
    per class, added to ``"cls"`` (the cell's class offsets,
    :mod:`medtl.evaluation.class_offsets`); the softmax of the sum is then the decision's
    probability, no longer the mean."""

    def __init__(self, members: list[torch.nn.Module], offsets: Any = None):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        shift = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
        self.register_buffer("offsets", shift)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [m(x) for m in self.members]
        res: dict[str, torch.Tensor] = {}
        for key in ("seg", "cls"):
            if key in outs[0]:
                z = [o[key] for o in outs]
                res[key] = mean_probability_logits(z, key == "seg" and z[0].shape[1] == 1)
        if self.offsets is not None and "cls" in res:
            res["cls"] = res["cls"] + self.offsets.to(res["cls"])
        return res

    def describe(self) -> str:
        """``"mean of K fold models (<what each member's inference copy does>)"``, and the
        class offsets when it has them."""
        inner = getattr(self.members[0], "describe", lambda: "eager")()
        shift = ""
        if self.offsets is not None:
            shift = ", class offsets " + " ".join(f"{float(o):+.1f}" for o in self.offsets)
        return f"mean of {len(self.members)} fold models ({inner}){shift}"


# ----------------------------------------------------------------------------- which cell
def is_cell_folder(path: str | Path) -> bool:
    """True for a comparison cell folder (``fold0/`` inside, no ``model.pt``)."""
    p = Path(path)
    return (p / "fold0").is_dir() and not (p / "model.pt").exists()


def _ranked_cells(cmp: Path) -> list[str]:
    results = Results.read(cmp)
    if results is None:
        raise MedtlError(
            f"{cmp / RESULTS_FILE} not found; rank the cells first: medtl compare --collect {cmp}"
        )
    return results.ranked_cells


def resolve_cell(cmp: str | Path, config: str | int | None = None) -> Path:
    """The cell folder of ``config`` in comparison ``cmp``: a rank (1 = best), a cell id or a
    cell folder path; ``cmp`` itself when it is a cell folder and ``config`` is None."""
    cmp = Path(cmp)
    if config is None:
        if is_cell_folder(cmp):
            return cmp
        raise MedtlError(f"{cmp}: give --config N (rank or cell id) to use a comparison")
    text = str(config).strip()
    if is_cell_folder(text):
        return Path(text)
    design = read_design(cmp)
    ids = [c["id"] for c in design["cells"]]
    if text in ids:
        return cmp / "cells" / text
    if text.isdigit():
        ranked = _ranked_cells(cmp)
        if not 1 <= int(text) <= len(ranked):
            raise MedtlError(
                f"--config {text}: {cmp} has {len(ranked)} finished configuration(s); "
                f"give a rank 1-{len(ranked)} or a cell id"
            )
        return cmp / "cells" / ranked[int(text) - 1]
    raise MedtlError(
        f"--config {text}: not a rank, cell id or cell folder of {cmp}; cell ids: {', '.join(ids)}"
    )


def fold_runs(cell: Path, strict: bool = False) -> list[Path]:
    """The finished fold runs of ``cell`` (those with a ``model.pt``), in fold order.

    Unfinished folds are left out with a warning, or (``strict``) are an error.
    """
    folds = sorted(
        (p for p in Path(cell).glob("fold*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:])
    )
    done = [p for p in folds if (p / "model.pt").is_file()]
    missing = [p.name for p in folds if p not in done]
    if not done:
        raise MedtlError(f"{cell}: no finished fold (no fold*/model.pt); run the comparison first")
    if missing and strict:
        raise MedtlError(
            f"{cell}: {', '.join(missing)} not finished; finish the comparison or drop --strict"
        )
    if missing:
        log.warning(f"{cell}: {', '.join(missing)} not finished; ensemble of {len(done)} folds")
    return done


def _check_members(runs: list[Path], cfgs: list[Config], classes: list[list[str]]) -> None:
    for name, values in (
        ("tasks", [c.task for c in cfgs]),
        ("label sets", [tuple(c) for c in classes]),
        ("image sizes", [c.data.image_size for c in cfgs]),
    ):
        if len(set(values)) > 1:
            raise MedtlError(
                f"{runs[0].parent}: folds trained on different {name} "
                f"({', '.join(map(str, dict.fromkeys(values)))}); ensemble folds of one comparison"
            )


def load_ensemble(
    runs: list[Path],
    optimise: bool = True,
    device: str = "auto",
    cell: Path | None = None,
    class_offsets: str = "cv",
) -> tuple[FoldEnsemble, Config, list[str]]:
    """The :class:`FoldEnsemble` of ``runs`` on ``device`` (auto: CUDA, else MPS, else CPU;
    on the CPU each member the optimised inference copy unless ``optimise=False``), the
    first run's config and the classes. With ``cell``, the class offsets its
    ``class_offsets.json`` kept are added to the class logits (``class_offsets="none"``: not)."""
    from medtl.inference.engine import inference_net
    from medtl.runtime.device import resolve_device

    loaded = [load_bundle(r) for r in runs]
    _check_members(runs, [c for _, c, _ in loaded], [k for _, _, k in loaded])
    where = resolve_device(device)
    members = [inference_net(net.to(where), where, optimise) for net, _, _ in loaded]
    classes = loaded[0][2]
    shift = None if cell is None else offsets_of(cell, classes, class_offsets)
    if shift is not None:
        said = offsets_text(dict(zip(classes, shift, strict=True)))
        log.info(f"class offsets from {cell / OFFSETS_FILE}: {said}")
    return FoldEnsemble(members, shift).to(where).eval(), loaded[0][1], classes


# ----------------------------------------------------------------------------- evaluate / predict
def evaluate_cell(
    cell: Path,
    split: str = "test",
    tta: bool = False,
    save_images: int = 64,
    plots: bool = True,
    strict: bool = False,
    optimise: bool = True,
    postprocess: str | None = None,
    device: str = "auto",
    class_offsets: str = "cv",
) -> dict[str, Any]:
    """Evaluate the fold ensemble of ``cell`` on ``split`` of its folds' splits.json into
    ``cell/ensemble/eval/<split>/`` (the files a single run's evaluation writes), its masks
    post-processed by ``postprocess`` (None: the rule ``CELL/postprocess.json`` chose on
    CV; ``"none"``: as predicted), its classes decided with the class offsets chosen on CV
    (``CELL/class_offsets.json``; ``class_offsets="none"``: without)."""
    from medtl.comparison.ensemble_eval import run_evaluation

    runs = fold_runs(cell, strict)
    net, cfg, classes = load_ensemble(runs, optimise, device, cell, class_offsets)
    rule = _rule(cell, postprocess)
    return run_evaluation(
        cell / ENSEMBLE_DIR, runs, net, cfg, classes, split, tta, save_images, plots, rule
    )


def _rule(cell: Path, postprocess: str | None) -> str | None:
    """``--postprocess`` for an ensemble: given (``none`` = off), else the cell's CV choice."""
    from medtl.inference.postprocess import cell_rule, parse_rule

    return cell_rule(cell) if postprocess is None else parse_rule(postprocess)


def evaluate_ensemble(
    cmp: str | Path,
    config: str | int | None = None,
    data: str | Path | None = None,
    overrides: list[str] | None = None,
    checkpoint: str = "best",
    split: str = "auto",
    **options: Any,
) -> dict[str, Any]:
    """``medtl evaluate CMP --config N``: the fold ensemble on ``split`` (``auto``: the
    held-out test split, else val); ``options`` as :func:`evaluate_cell`."""
    if data is not None or overrides or checkpoint != "best":
        raise MedtlError(
            "a fold ensemble is evaluated on its comparison's own test split with the best "
            "checkpoints, in one process; drop --data/--checkpoint/key=value"
        )
    if options.pop("decide", None) is not None:
        raise MedtlError(
            f"{cmp} --config {config}: --calibrate, --youden/--sensitivity/--specificity, "
            "--seg-threshold and --hd95 are not built for a fold ensemble; drop them (or use "
            "them on one fold run, CELL/fold0)"
        )
    return evaluate_cell(resolve_cell(cmp, config), split=split, **options)


def evaluate_cell_ensemble(cell: Path, skip_finished: bool = True) -> dict[str, Any] | None:
    """The comparison's step after a cell's folds: the post-processing and the class offsets
    chosen on the folds' out-of-fold predictions (``CELL/postprocess.json``,
    ``CELL/class_offsets.json``), then the ensemble on the test split with them (no plots)."""
    from medtl.evaluation.class_offsets import choose_for_cell as choose_offsets
    from medtl.evaluation.postprocess import choose_for_cell

    if skip_finished and (cell / ENSEMBLE_DIR / "eval" / "test" / "summary.json").is_file():
        return None
    runs = fold_runs(cell, strict=True)
    choose_for_cell(cell, runs)
    choose_offsets(cell, runs)  # the classes in the order of the folds' p_<class> columns
    return evaluate_cell(cell, "test", plots=False, strict=True)


def predict_ensemble(
    cmp: str | Path,
    config: str | int | None,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    batch_size: int = 8,
    strict: bool = False,
    optimise: bool = True,
    postprocess: str | None = None,
    threshold: str | float | None = None,
    positive: str | None = None,
    device: str = "auto",
    class_offsets: str = "cv",
) -> list[str]:
    """``medtl predict CMP --config N INPUT...``: the fold ensemble's masks, overlays and
    predictions.csv, written by :func:`medtl.inference.predictor.write_predictions`; masks under
    ``postprocess`` (None: the cell's CV choice, see :func:`evaluate_cell`). A fold
    ensemble has no stored operating point: ``threshold``/``positive`` are an error."""
    from medtl.inference.predictor import predict_with

    if threshold is not None or positive is not None:
        raise MedtlError(
            f"{cmp} --config {config}: --threshold/--positive are not built for a fold "
            "ensemble (it has no operating point); drop them"
        )

    cell = resolve_cell(cmp, config)
    net, cfg, classes = load_ensemble(
        fold_runs(cell, strict), optimise, device, cell, class_offsets
    )
    rule = _rule(cell, postprocess)
    scheme = run_scheme(cfg)  # the folds' masks (one data set: one scheme)
    return predict_with(
        net, cfg, classes, inputs, out, tta, batch_size, postprocess=rule, scheme=scheme
    )
