"""``export_ensemble(cmp, config)``: one configuration's K fold models as one ONNX graph.

``medtl export CMP --config N`` (``N``: rank, cell id or cell folder, resolved by
:func:`medtl.comparison.ensemble.resolve_cell` as for evaluate and predict) writes into
``CMP/cells/<cell>/ensemble/export/`` (or ``--out DIR``)::

    model.onnx    input "image" float (N, 3, S, S) in [0, 1]; outputs "seg" and/or "cls" as
                  a run's export: the logits of the K members' mean probability
                  (:class:`~medtl.comparison.ensemble.FoldEnsemble`, all K inside the graph)
    export.json   the fields of a run's export.json, plus "ensemble": the members, the
                  mean, the post-processing rule chosen on CV

The graph is parity-checked against the ``FoldEnsemble`` in PyTorch exactly as a run's
graph against its network (:func:`medtl.exporting.exporter.write_graph`). Like
``medtl predict CMP --config N`` it applies no member's temperature (the ensemble folder's
own ``calibration.json`` would be applied, as a run's is; medtl writes none there). Mask post-processing is not in the graph:
the rule of ``CELL/postprocess.json`` is recorded (export.json and the metadata entry
``medtl.inference.postprocess``) and ``medtl predict CMP --config N --onnx`` applies it.

Example::

    from medtl.exporting import export_ensemble
    info = export_ensemble("cmp", "1")   # the best configuration's folds
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtl.exporting.exporter import graph_meta, write_graph
from medtl.exporting.records import write_export
from medtl.exporting.staleness import calibration_record
from medtl.utils.errors import MedtlError

__all__ = ["export_ensemble"]
MEAN = (
    "mean of the members' probabilities (sigmoid per pixel for a one-channel mask, softmax "
    "over channels otherwise); outputs are the logits of that mean"
)


def export_ensemble(
    cmp: str | Path,
    config: str | int | None = None,
    out: str | Path | None = None,
    opset: int = 17,
    strict: bool = False,
    int8: bool = False,
) -> dict[str, Any]:
    """Export the fold ensemble of configuration ``config`` of comparison ``cmp`` (or of the
    cell folder ``cmp``) as one parity-checked ONNX graph; returns export.json.

    ``strict``: every fold must be finished (else the finished ones, with a warning).
    int8 quantisation of an ensemble is not built (MedtlError)."""
    from medtl.comparison.ensemble import ENSEMBLE_DIR, fold_runs, load_ensemble, resolve_cell
    from medtl.inference.decisions import calibrated
    from medtl.inference.postprocess import POSTPROCESS_FILE, cell_rule

    if int8:
        raise MedtlError(
            f"{cmp}: int8 export of a fold ensemble is not built; drop --int8 (or export one "
            "fold run with --int8)"
        )
    cell = resolve_cell(cmp, config)
    runs = fold_runs(cell, strict)
    net, cfg, classes = load_ensemble(runs, optimise=False, cell=cell)  # eager, as a run's export
    shift = None
    if net.offsets is not None:  # the cell's class offsets: inside the graph
        shift = {c: round(float(o), 6) for c, o in zip(classes, net.offsets.tolist(), strict=True)}
    folder = cell / ENSEMBLE_DIR
    net = calibrated(net, folder)  # the record below then always says what the graph holds
    out_dir = Path(out) if out is not None else folder / "export"
    size, rule = cfg.data.image_size, cell_rule(cell)
    record = calibration_record(folder)
    meta = graph_meta(cfg.task, classes, size, record)
    meta.update(ensemble=json.dumps([r.name for r in runs]), postprocess=rule or "none")
    graph = write_graph(net, out_dir, size, opset, meta, cell)
    info: dict[str, Any] = {
        "run": str(folder),
        "cell": str(cell),
        **graph,
        "task": cfg.task,
        "classes": classes,
        "temperature": record["temperature"],
        "calibration": record,
        "ensemble": {
            "members": [str(r) for r in runs],
            "n_members": len(runs),
            "mean": MEAN,
            "postprocess": rule,
            "postprocess_file": str(cell / POSTPROCESS_FILE),
            "postprocess_in_graph": False,  # medtl predict --onnx applies it
            "class_offsets": shift,
            "class_offsets_in_graph": True,  # CELL/class_offsets.json, added to the class logits
        },
        "int8": None,
    }
    (out_dir / "model.int8.onnx").unlink(missing_ok=True)  # would not match this model.onnx
    write_export(out_dir, info)
    return info
