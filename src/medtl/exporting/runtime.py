"""ONNX Runtime on the CPU: :class:`OnnxPredictor` runs an exported model without PyTorch.

``predictor(x)`` takes float32 ``(N, 3, S, S)`` images in [0, 1] and returns the same
logits as ``Net.forward``; ``classes``, ``task`` and ``image_size`` come from the metadata
:func:`medtl.exporting.export_onnx` stores in the model (keys prefixed :data:`META_PREFIX`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtl.exporting.records import META_PREFIX as META_PREFIX  # re-exported
from medtl.exporting.records import GraphMeta
from medtl.utils.errors import MedtlError

INPUT_NAME = "image"
OUTPUT_ORDER = ("seg", "cls")  # fixed order of the tuple the exported graph returns
THREADS: int | None = None  # ONNX Runtime intra-op threads; None: os.cpu_count()


class OnnxPredictor:
    """An ONNX Runtime session on the CPU: ``predictor(x)`` -> ``{"seg": ..., "cls": ...}``.

    ``x`` is float32 ``(N, 3, S, S)`` in [0, 1] with ``S == predictor.image_size``; outputs
    are the same logits as ``Net.forward`` as numpy arrays. ``classes``, ``task`` and
    ``image_size`` come from the metadata ``export_onnx`` stores in the model.

    Example::

        pred = OnnxPredictor("RUN/export/model.onnx")
        logits = pred(np.zeros((2, 3, pred.image_size, pred.image_size), np.float32))["seg"]
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MedtlError(f"{self.path} not found; create it with 'medtl export RUN'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or THREADS or os.cpu_count() or 1
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise MedtlError(
                f"{self.path}: ONNX Runtime cannot load it ({exc.__class__.__name__}); re-export "
                "with 'medtl export RUN'"
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape_size = inp.shape[2] if isinstance(inp.shape[2], int) else None
        meta = GraphMeta.of(
            dict(self.session.get_modelmeta().custom_metadata_map), self.path, shape_size
        )
        self.meta: dict[str, str] = meta.entries  # every metadata entry, prefixed META_PREFIX
        self.graph_meta = meta  # the entries checked and typed
        self.image_size: int | None = meta.image_size
        self.classes: list[str] = meta.classes
        self.task: str | None = meta.task

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        s = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or (s is not None and x.shape[2:] != (s, s)):
            raise MedtlError(
                f"{self.path}: input shape {tuple(x.shape)} does not fit; give (N, 3, {s}, {s}) "
                "float32 images in [0, 1]"
            )
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))


def model_mb(path: Path) -> float:
    """Size of a model file in MiB (3 decimals), as export.json records it."""
    return round(path.stat().st_size / 2**20, 3)
