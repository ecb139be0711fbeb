"""Command line: parse, call :mod:`medtl.api`, print. No logic lives here.

User errors (:class:`medtl.utils.errors.MedtlError`) print one line and exit 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from medtl.cli.commands import (
    cmd_app,
    cmd_audit,
    cmd_bench,
    cmd_compare,
    cmd_demo,
    cmd_evaluate,
    cmd_explain,
    cmd_export,
    cmd_models,
    cmd_plan,
    cmd_predict,
    cmd_report,
    cmd_slices,
    cmd_synth,
    cmd_train,
)
from medtl.cli.decisions import (
    add_evaluate_options,
    add_predict_options,
)
from medtl.utils.errors import MedtlError, os_error_line

EAGER_HELP = "run the network as trained (default on CPU: Conv-BN folded, channels_last)"


def _stderr_logging() -> None:
    log = logging.getLogger("medtl")
    mine = [h for h in log.handlers if getattr(h, "_medtl_console", False)]
    if mine:  # main() called again in this process: write to today's stderr, not a closed
        mine[0].stream = sys.stderr  # one (setStream would flush the old, maybe closed, stream)
    else:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._medtl_console = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.setLevel(logging.INFO)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects I/N like 1/4, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--shard {text}: I must be between 1 and N")
    return i, n


def _ensemble_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", metavar="N", help="RUN=CMP: the fold ensemble of config N")
    sp.add_argument("--strict", action="store_true", help="with --config: all folds finished")
    sp.add_argument(
        "--postprocess",
        metavar="largest|min_area=A|none",
        help="mask post-processing (A pixels, or A%% of the image); default: none for a run, "
        "the rule chosen on CV (CELL/postprocess.json) for --config",
    )
    sp.add_argument(
        "--class-offsets",
        choices=["cv", "none"],
        help="with --config: add the class offsets chosen on the folds' out-of-fold "
        "predictions (CELL/class_offsets.json) to the class logits (cv, the default) or not",
    )


def _device_option(sp: argparse.ArgumentParser, default: str | None = "auto") -> None:
    sp.add_argument(
        "--device",
        default=default,
        choices=["auto", "cpu", "cuda", "mps"],
        help="where the model runs (auto: CUDA, else MPS, else CPU)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medtl", description="Transfer learning for 2D medical images."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        return sp

    sp = add("train", cmd_train, "train one model; prints the run folder last")
    sp.add_argument("-c", "--config", help="YAML config file")
    sp.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=5")

    sp = add("evaluate", cmd_evaluate, "metrics, per-image CSV and plots of a trained run")
    sp.add_argument("run")
    sp.add_argument("--data", help="evaluate on another data folder (all of it)")
    sp.add_argument(
        "--split",
        default="auto",
        choices=["auto", "train", "val", "test", "all"],
        help="which split of the run (auto: test if the run has one, else val)",
    )
    sp.add_argument(
        "--tta", action="store_true", help="horizontal-flip test-time augmentation (2x cost)"
    )
    sp.add_argument("--eager", action="store_true", help=EAGER_HELP)
    sp.add_argument(
        "--no-plots",
        action="store_true",
        help="no figures (curves, ROC, reliability, Dice histogram, case grids, GIF, "
        "Grad-CAM grid); metrics, CSVs, masks and overlays as always",
    )
    sp.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|PATH",
        help="weights to evaluate: best (model.pt, default), last (checkpoints/last.ckpt) "
        "or a .ckpt file; others than best write eval/<split>-<name>",
    )
    add_evaluate_options(sp)
    _ensemble_options(sp)
    _device_option(sp)
    sp.add_argument(
        "overrides",
        nargs="*",
        help="train.devices=N train.accelerator=... train.num_nodes=... (DDP evaluation); "
        "data.lesion_labels=... (which structures get lesion-level detection)",
        metavar="key=value",
    )

    sp = add("predict", cmd_predict, "masks / labels / overlays for new images")
    sp.add_argument("run")
    sp.add_argument("inputs", nargs="+", help="image files or folders")
    sp.add_argument("--out", default="predictions", help="output folder")
    sp.add_argument("--tta", action="store_true", help="horizontal-flip test-time augmentation")
    sp.add_argument("--onnx", action="store_true", help="use RUN/export/model.onnx (ONNX Runtime)")
    sp.add_argument("--int8", action="store_true", help="use RUN/export/model.int8.onnx")
    sp.add_argument("--eager", action="store_true", help=EAGER_HELP)
    sp.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    add_predict_options(sp)
    _ensemble_options(sp)
    _device_option(sp)

    sp = add("explain", cmd_explain, "Grad-CAM heat maps of a run's predictions")
    sp.add_argument("run")
    sp.add_argument("inputs", nargs="+", help="image files or folders")
    sp.add_argument("--out", default="cam", help="output folder")
    sp.add_argument(
        "--method",
        default="gradcam",
        help="gradcam (default), gradcam++, hirescam, xgradcam, layercam, eigencam, ...",
    )
    sp.add_argument("--target", help="class to explain (default: the predicted class)")
    sp.add_argument(
        "--layer", help="module to take the maps at, e.g. encoder.layer3 (default: deepest stage)"
    )
    _device_option(sp)

    sp = add("app", cmd_app, "browser page to try the run on your own images (Gradio)")
    sp.add_argument("run")
    sp.add_argument("--port", type=int, default=7860)
    sp.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: this machine only)"
    )
    _device_option(sp)

    sp = add("export", cmd_export, "deployable ONNX model, parity-checked against PyTorch")
    sp.add_argument("run")
    sp.add_argument("--config", metavar="N", help="RUN=CMP: one graph of config N's fold models")
    sp.add_argument("--strict", action="store_true", help="with --config: all folds finished")
    sp.add_argument("--out", help="output folder (default RUN/export, CELL/ensemble/export)")
    sp.add_argument("--format", default="onnx", choices=["onnx"])
    sp.add_argument(
        "--int8", action="store_true", help="also a static int8 model (Dice drop measured)"
    )
    sp.add_argument("--opset", type=int, default=17)

    sp = add("synth", cmd_synth, "write the synthetic breast-ultrasound phantom data set")
    sp.add_argument("out")
    sp.add_argument("--n", type=int, default=120)
    sp.add_argument("--size", type=int, default=128)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--layout", default="class_masks", choices=["class_masks", "imagefolder"])
    sp.add_argument("--labels", type=int, default=0, help="1-3: images/+masks/ label maps")

    sp = add("demo", cmd_demo, "the main job on the embedded phantom data")
    sp.add_argument("--out", default="demo_runs")
    sp.add_argument("--quick", action="store_true", help="tiny settings (for tests)")

    sp = add("audit", cmd_audit, "layout, counts, duplicates, leakage, bad files")
    sp.add_argument("data")
    sp.add_argument("--layout", default="auto")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--strict", action="store_true", help="exit 1 when problems are found")
    sp.add_argument("--preview", nargs="?", const="", metavar="PNG", help="samples+outlines PNG")
    sp.add_argument(
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="a data.* key that changes how data are read (data.mask_resize=nearest, "
        "data.label_tag=..., data.mask_mode=..., data.group_pattern=none, ...); repeatable",
    )
    sp.add_argument("overrides", nargs="*", help="data.* key=value overrides, as for -o")

    sp = add("slices", cmd_slices, "NIfTI volumes -> PNG slices, masks and a CSV (group = volume)")
    sp.add_argument("volumes", help="folder with images/ (+ labels/) of .nii/.nii.gz volumes")
    sp.add_argument("out", help="output folder (images/, masks/, slices.csv)")
    sp.add_argument("--axis", type=int, default=2, choices=[0, 1, 2], help="voxel axis to slice")
    sp.add_argument(
        "--empty-fraction", type=float, default=1.0, help="share of label-empty slices kept"
    )
    sp.add_argument("--window", help="intensity window C,W or a preset (brain, lung, ...)")

    sp = add(
        "compare",
        cmd_compare,
        "grid of runs on identical splits -> table with CIs, p-values, report",
    )
    sp.add_argument("-c", "--config", help="YAML config file for every cell")
    sp.add_argument(
        "--folds", type=int, default=0, help="K-fold cross-validation (grouped, stratified)"
    )
    sp.add_argument("--test-fraction", type=float, help="test split no fold sees (0: none)")
    sp.add_argument(
        "--out", default="compare", help="comparison folder (re-running it skips finished cells)"
    )
    sp.add_argument(
        "--shard", type=_shard, help="I/N: run every N-th cell starting at I (for clusters)"
    )
    sp.add_argument(
        "--collect", metavar="DIR", help="merge the finished cells of DIR (e.g. after shards)"
    )
    sp.add_argument(
        "--cell",
        action="append",
        metavar="'K=V K=V'",
        help="one configuration (space-separated overrides); repeat for each cell "
        "instead of a key=a,b grid, e.g. --cell 'model.weights=none'",
    )
    sp.add_argument("--no-progress", action="store_true")
    _device_option(sp, None)  # None: train.accelerator of the config (auto)
    sp.add_argument("overrides", nargs="*", help="key=value (fixed) and key=a,b (grid) overrides")

    sp = add("plan", cmd_plan, "a recipe fitted to the data and this machine within a budget")
    sp.add_argument("data")
    sp.add_argument("--task", default="segmentation", help="segmentation|classification|multitask")
    sp.add_argument("--budget", default="30m", help="wall time for the whole plan: 1800, 30m, 2h")
    sp.add_argument("--folds", type=int, help="K folds (0: one split; default: the plan's choice)")
    sp.add_argument("--out", default="plan.yaml", help="the recipe to write")
    sp.add_argument("--layout", default="auto")
    _device_option(sp)
    sp.add_argument(
        "overrides", nargs="*", help="key=value: how to read the data, as medtl audit takes them"
    )

    sp = add("report", cmd_report, "self-contained HTML report of a run or a comparison")
    sp.add_argument("dir")

    sp = add("bench", cmd_bench, "throughput / memory vs the naive loop (JSON object printed last)")
    sp.add_argument(
        "--naive",
        metavar="PATH",
        help="naive_baseline.py (default: $MEDTL_NAIVE_BASELINE, else ./naive_baseline.py)",
    )
    sp.add_argument(
        "--encoders", help="comma-separated (default resnet18,efficientnet-lite0,vgg16_bn)"
    )
    sp.add_argument("--steps", type=int, help="timed steps per measurement (default 10)")
    sp.add_argument(
        "--repeats",
        type=int,
        help="interleaved naive/medtl pairs per measurement, medians kept (default 1)",
    )
    sp.add_argument(
        "--quick", action="store_true", help="64 px, resnet18 only, 3 steps (smoke test)"
    )
    sp.add_argument("overrides", nargs="*", help="key=value, e.g. data.root=DIR")

    add("models", cmd_models, "encoders, decoders, weights on disk")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    # argparse gives an optional-interleaved positional list only its first run of values
    # (``evaluate RUN --split val train.devices=2``); key=value words after an option
    # belong to the overrides too
    stray = [w for w in extra if w.startswith("-") or "=" not in w]
    if stray or (extra and not hasattr(a, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        a.overrides = list(a.overrides or []) + extra
    _stderr_logging()
    from medtl.runtime.cpu import owning_process

    try:
        with owning_process():  # the command owns its process: CPU settings apply to it
            return a.fn(a)
    except MedtlError as exc:
        if a.debug:
            raise
        print(f"medtl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # full disk, read-only folder, a file where a folder belongs
        if a.debug:
            raise
        print(f"medtl: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # training's says how to resume the run
        print(f"medtl: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
