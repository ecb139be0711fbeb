"""Animated GIF of predictions: one ``image | truth | prediction`` frame per case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medtl.plots.common import as_display
from medtl.utils.files import atomic_write

MAX_GIF_FRAMES = 24
CAPTION_HEIGHT = 22


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _panel(array: np.ndarray | None, size: int, mask: bool, label: str, font: Any) -> Image.Image:
    if array is None:
        panel = Image.new("RGB", (size, size), (45, 45, 45))
        label = f"{label}: none"
    elif mask:
        m = (np.asarray(array) > 0).astype(np.uint8) * 255
        panel = (
            Image.fromarray(m, mode="L")
            .resize((size, size), Image.Resampling.NEAREST)
            .convert("RGB")
        )
    else:
        panel = Image.fromarray(as_display(array), mode="RGB").resize(
            (size, size), Image.Resampling.BILINEAR
        )
    draw = ImageDraw.Draw(panel)
    box = draw.textbbox((3, 2), label, font=font)
    draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
    draw.text((3, 2), label, fill=(255, 210, 0), font=font)
    return panel


def predictions_frame(
    image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None, caption: str, size: int = 160
) -> Image.Image:
    """One RGB frame: caption strip on top of ``image | ground truth | prediction``."""
    font = _font()
    frame = Image.new("RGB", (3 * size, size + CAPTION_HEIGHT), (255, 255, 255))
    for i, (arr, is_mask, label) in enumerate(
        ((image, False, "image"), (truth, True, "truth"), (pred, True, "pred"))
    ):
        frame.paste(_panel(arr, size, is_mask, label, font), (i * size, CAPTION_HEIGHT))
    draw = ImageDraw.Draw(frame)
    draw.text(
        (4, CAPTION_HEIGHT // 2),
        _fit_text(draw, caption, 3 * size - 8, font),
        fill=(0, 0, 0),
        font=font,
        anchor="lm",
    )
    return frame


def predictions_gif(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]],
    out: Path,
    size: int = 160,
    duration_ms: int = 700,
) -> Path:
    """Animated GIF, one frame per ``(image, pred, truth_or_None, caption)`` tuple (note: the
    tuple holds the prediction before the optional truth, while the panels read left to right
    ``image | truth | pred``); at most 24 frames, each ``3 * size`` wide and
    ``size + CAPTION_HEIGHT`` high; masks white on black, a missing truth is a grey panel.
    Returns ``out``.

    GIF encoders merge identical consecutive frames, so give frames distinct captions.
    """
    if not frames:
        raise ValueError("predictions_gif needs at least one frame")
    images = [
        predictions_frame(img, pred, truth, caption, size)
        for img, pred, truth, caption in frames[:MAX_GIF_FRAMES]
    ]
    first, rest = images[0], images[1:]
    return atomic_write(
        Path(out),
        lambda p: first.save(
            p, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0
        ),
    )
