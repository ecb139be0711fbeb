"""``medtl app RUN``: a Gradio page where a colleague drops a PNG/JPEG/TIFF/BMP or DICOM
image and sees the predicted mask over it, the label probabilities and the class
activation map, and downloads the mask. No terminal needed after the start.

The page binds to 127.0.0.1 (this machine only) unless ``host`` says otherwise, and prints
the address. Predictions come from :func:`medtl.load` (the network ``medtl predict`` runs);
the map from :class:`medtl.inference.explain.Explainer` (left out, with a note, without the
``[explain]`` extra). An image that cannot be decoded gives a message in the page; the app
keeps running. Uploads are refused above the run's ``data.max_pixels`` from their header.
When the page stops (``.close()``, Ctrl+C, the process exiting) the predicted masks and
the uploads Gradio kept in its temporary folder for this page are deleted. Example::

    from medtl.apps.gradio_app import build_app
    demo = build_app("runs/seg-unet-...")      # a gradio.Blocks
    demo.launch(server_name="127.0.0.1", server_port=7860)
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.readers.io import pixel_cap, read_image
from medtl.inference.engine import overlay, safe_name, save_mask
from medtl.inference.explain import require_extra
from medtl.utils.errors import MedtlError

log = logging.getLogger("medtl")
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"]
LOCAL = "127.0.0.1"


class Analyser:
    """What the page computes for one uploaded file (kept apart from Gradio for tests)."""

    def __init__(self, run: str | Path, device: str = "auto"):
        from medtl.inference.predictor import load

        self.run = Path(run)
        self.predictor = load(self.run, device=device)
        self.scheme = self.predictor.scheme  # the masks' own encoding
        try:
            from medtl.inference.explain import Explainer

            self.explainer: Any = Explainer(self.run, device=device)
            self.cam_note = f"Grad-CAM: {self.explainer.describe()}"
        except MedtlError as exc:  # the [explain] extra is missing: the page still predicts
            self.explainer, self.cam_note = None, f"No activation map: {exc}"
        self.out = Path(tempfile.mkdtemp(prefix="medtl-app-"))
        self.uploads: set[Path] = set()  # files Gradio saved for this page

    def cleanup(self) -> None:
        """Delete the predicted masks and every upload seen that Gradio saved in its
        temporary folder (a path given from elsewhere is left alone)."""
        shutil.rmtree(self.out, ignore_errors=True)
        for path in list(self.uploads):
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # Gradio's one folder per upload, if now empty
                path.parent.rmdir()
            self.uploads.discard(path)

    def __call__(self, path: str | None) -> tuple[Any, Any, Any, Any, str]:
        """``(overlay, probabilities, cam, mask file, message)`` for an uploaded file;
        Nones and the reason in the message when the file cannot be read."""
        if not path:
            return None, None, None, None, "Drop an image (PNG, JPEG, TIFF, BMP or DICOM)."
        self._remember(Path(path))
        try:
            with pixel_cap(self.predictor.cfg.data.max_pixels):
                image = read_image(path)
        except Exception as exc:  # any decoder error is the file's fault, not the app's
            reason = str(exc) if isinstance(exc, MedtlError) else type(exc).__name__
            return None, None, None, None, f"Cannot read {Path(path).name}: {reason}"
        result = self.predictor.predict(image)
        mask_file, shown = None, image
        if result.mask is not None:
            shown = overlay(image, result.mask)
            mask_file = self.out / f"{safe_name(Path(path).stem)}_mask.png"
            save_mask(mask_file, result.mask, self.scheme)
        cam = None
        if self.explainer is not None:
            explanation = self.explainer.explain(image)
            head = "cls" if "cls" in explanation.maps else "seg"
            cam = explanation.overlay(head)
        lines = [f"**{Path(path).name}**: {image.shape[1]} x {image.shape[0]} px"]
        if result.label is not None:
            lines.append(f"predicted class: **{result.label}**")
        if result.mask is not None:
            lines.append(f"lesion pixels: {int(np.count_nonzero(result.mask))}")
        lines.append(self.cam_note)
        return (
            shown,
            result.probabilities,
            cam,
            str(mask_file) if mask_file else None,
            ("  \n".join(lines)),
        )

    def _remember(self, path: Path) -> None:
        try:
            from gradio.utils import get_upload_folder

            folder = Path(get_upload_folder()).resolve()
        except ImportError:
            return
        if path.resolve().is_relative_to(folder):
            self.uploads.add(path)


def _clean_on_close(demo: Any, analyse: Analyser) -> None:
    """Make ``demo.close()`` (and the process exiting) delete what the page left behind."""
    close = demo.close

    def close_and_clean(*args: Any, **kwargs: Any) -> Any:
        try:
            return close(*args, **kwargs)
        finally:
            analyse.cleanup()
            for files in getattr(demo, "temp_file_sets", []):  # Gradio's copies of outputs
                for file in list(files):
                    Path(file).unlink(missing_ok=True)
                    files.discard(file)

    demo.close = close_and_clean
    demo.analyser = analyse
    atexit.register(analyse.cleanup)


def build_app(run: str | Path, device: str = "auto") -> Any:
    """The ``gradio.Blocks`` page of a run folder (refuses a folder without model.pt); the
    model runs on ``device`` (auto: CUDA, else MPS, else CPU)."""
    if not (Path(run) / "model.pt").is_file():
        from medtl.runs.folder import load_bundle

        load_bundle(Path(run))  # raises the usual one-line error naming model.pt
    gr = require_extra("gradio", "app")
    analyse = Analyser(run, device)
    with gr.Blocks(title=f"medtl: {Path(run).name}", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## medtl · {Path(run).name}\nTask **{analyse.predictor.cfg.task}**; "
            "drop an image to see what the model predicts and where it looks. "
            "Research use only: not a medical device."
        )
        with gr.Row():
            upload = gr.File(label="image", file_types=UPLOAD_TYPES, elem_id="upload")
            message = gr.Markdown(elem_id="message")
        with gr.Row():
            shown = gr.Image(
                label="prediction overlay", elem_id="overlay", type="numpy", height=320
            )
            cam = gr.Image(
                label="activation map (Grad-CAM)", elem_id="cam", type="numpy", height=320
            )
        with gr.Row():
            probs = gr.Label(label="probabilities", elem_id="probabilities")
            mask = gr.File(label="mask (PNG)", elem_id="mask")
        upload.change(analyse, inputs=upload, outputs=[shown, probs, cam, mask, message])
    _clean_on_close(demo, analyse)
    return demo


def serve(
    run: str | Path, host: str = LOCAL, port: int = 7860, block: bool = True, device: str = "auto"
) -> Any:
    """Start the page on ``host:port`` and print the address; ``block=False`` returns the
    running ``gradio.Blocks`` (``.close()`` stops it)."""
    demo = build_app(run, device)
    where = (
        "this machine only; --host 0.0.0.0 shares it on the network"
        if host == LOCAL
        else "reachable from other machines: the page has no password"
    )
    log.info("medtl app: http://%s:%d (%s); Ctrl+C stops it", host, port, where)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=not block,
            quiet=True,
            share=False,
            inbrowser=False,
        )
    except BaseException:
        demo.close()
        raise
    if block:  # launch returned: Ctrl+C or the server stopped
        demo.close()
    return demo


__all__ = ["LOCAL", "UPLOAD_TYPES", "Analyser", "build_app", "serve"]
