"""The Python API: what the CLI and users call.

Example::

    from medtl import api
    from medtl.config import load_config

    api.synth("phantoms", n=40, size=64)
    run = api.train(load_config(overrides=["data.root=phantoms", "data.image_size=64",
                                           "train.epochs=1", "model.weights=none"]))
    print(api.format_summary(api.evaluate(run)))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtl.config import Config, load_config
from medtl.evaluate import evaluate, format_summary
from medtl.predict import predict
from medtl.training import train

__all__ = [
    "train",
    "evaluate",
    "predict",
    "format_summary",
    "synth",
    "audit",
    "models_table",
    "demo",
    "load_config",
]


def synth(
    out: str | Path, n: int = 120, size: int = 128, seed: int = 0, layout: str = "class_masks"
) -> Path:
    """Write the phantom data set (``class_masks`` with masks, or ``imagefolder`` without)."""
    from medtl.data.synthetic import make_imagefolder, make_phantoms

    return (make_phantoms if layout == "class_masks" else make_imagefolder)(
        out, n=n, size=size, seed=seed
    )


def audit(data: str | Path, layout: str = "auto") -> Any:
    """Audit a data folder (see :mod:`medtl.data.audit`)."""
    from medtl.data.audit import audit as run_audit

    return run_audit(data, layout=layout)


def models_table() -> str:
    """Text table of every encoder (params, channels, normalisation, weights on disk) and decoder."""
    from medtl.models.build import ARCHS
    from medtl.models.encoders import describe_encoders

    rows = describe_encoders()
    head = f"{'encoder':20s} {'params':>8s}  {'channels':32s} {'mean/std':12s} {'on disk':8s} pretrained file"
    lines = [head, "-" * len(head)]
    for r in rows:
        mean = (
            "imagenet"
            if tuple(round(m, 3) for m in r["mean"]) == (0.485, 0.456, 0.406)
            else "other"
        )
        lines.append(
            f"{r['name']:20s} {r['params'] / 1e6:7.1f}M  {str(tuple(r['channels'])):32s} {mean:12s} "
            f"{'yes' if r['weights_on_disk'] else 'no':8s} {r.get('weights_file') or '-'}"
        )
    lines.append("")
    lines.append("decoders (model.arch): " + ", ".join(ARCHS))
    lines.append("any timm model: model.encoder=tu-<timm name> (weights from timm's cache)")
    return "\n".join(lines)


def demo(out: str | Path = "demo_runs", quick: bool = False) -> list[dict[str, Any]]:
    """The main job on the phantoms: frozen vs fine-tuned pretrained EfficientNet-Lite0 U-Net."""
    from medtl.demo import run_demo

    return run_demo(Path(out), quick=quick)


def compare(
    base: list[str],
    grid: list[str],
    folds: int = 0,
    out: str | Path = "compare",
    config_file: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    cells: list[list[str]] | None = None,
) -> Path:
    """Train every cell of ``grid`` on identical splits/folds; see :mod:`medtl.compare`.

    ``cells`` lists the configurations explicitly (each a list of ``key=value``) instead of
    the cartesian product of ``grid``.
    """
    from medtl.compare import compare as run_compare

    return run_compare(
        base,
        grid,
        folds=folds,
        out=Path(out),
        config_file=config_file,
        shard=shard,
        progress=progress,
        cell_list=cells,
    )


def collect(out: str | Path) -> dict[str, Any]:
    """Merge the finished cells of a comparison folder (e.g. after ``--shard`` runs)."""
    from medtl.compare import collect as run_collect

    return run_collect(Path(out))


def report(path: str | Path) -> Path:
    """Write ``report.html`` for a run or comparison folder; returns its path."""
    from medtl.report import write_report

    return write_report(Path(path))


def export(run: str | Path, int8: bool = False, opset: int = 17) -> dict[str, Any]:
    """ONNX export with a parity check (and optional int8); see :mod:`medtl.export`."""
    from medtl.export import export_onnx

    return export_onnx(Path(run), int8=int8, opset=opset)


def config(overrides: list[str] | None = None, file: str | Path | None = None) -> Config:
    """Shorthand for :func:`medtl.config.load_config`."""
    return load_config(file, overrides)
