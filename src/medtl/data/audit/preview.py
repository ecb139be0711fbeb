"""``medtl audit DATA --preview``: a PNG grid of sample images with their mask outlines,
one colour per class, written beside the data set (``DATA_preview.png``) or to a given path.

The samples are drawn with a fixed seed, round-robin over the classes so that every class
shows; an image whose files cannot be read is skipped (the audit itself reports it). The
figure is drawn by :func:`medtl.plots.preview.write_preview` from :func:`preview_samples`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medtl.data.layouts import Sample, discover
from medtl.data.readers.io import read_image, read_mask
from medtl.utils.errors import DataError

N_SAMPLES = 16
THUMB = 256  # longest side of a panel's image, in pixels: a light PNG for any data set


def preview_path(root: str | Path) -> Path:
    """The default preview file: beside the data folder (or CSV manifest), never inside it
    (a PNG inside would become part of the data set)."""
    root = Path(root).resolve()
    return root.parent / f"{root.stem if root.is_file() else root.name}_preview.png"


def pick_samples(samples: Sequence[Sample], n: int = N_SAMPLES, seed: int = 0) -> list[Sample]:
    """Up to ``n`` samples, seeded, taken in turn from each class (sorted) so all show."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label or ""].append(s)
    rng = random.Random(seed)
    queues = []
    for name in sorted(by_class):
        q = list(by_class[name])
        rng.shuffle(q)
        queues.append(q)
    picked: list[Sample] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    return picked


def _thumbnail(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """The image and its merged mask, shrunk together to at most :data:`THUMB` pixels."""
    image = read_image(sample.image)
    mask = read_mask(sample.masks, image.shape[:2]) if sample.masks else None
    scale = THUMB / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        if mask is not None:
            small = Image.fromarray(mask.astype(np.uint8) * 255).resize(
                size, Image.Resampling.NEAREST
            )
            mask = np.asarray(small) > 0
    return image, mask


def preview_samples(
    root: str | Path, layout: str = "auto", n: int = N_SAMPLES, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray | None], list[str | None], list[str], str]:
    """Up to ``n`` thumbnails of the data set under ``root``, with their merged masks, class
    labels, file names and the figure's heading. DataError when no sample can be read."""
    ds = discover(root, layout)
    images, masks, labels, titles = [], [], [], []
    for sample in pick_samples(ds.samples, len(ds.samples), seed):
        if len(images) == n:
            break
        try:
            image, mask = _thumbnail(sample)
        except DataError:
            continue  # the audit lists the file; the preview shows the next one
        images.append(image)
        masks.append(mask)
        labels.append(sample.label)
        titles.append(Path(sample.image).name)
    if not images:
        raise DataError(f"{root}: no readable image to preview; run 'medtl audit {root}'")
    heading = (
        f"{Path(root).name}: {len(images)} of {len(ds.samples)} images "
        f"(layout {ds.layout}); outline = mask, colour = class"
    )
    return images, masks, labels, titles, heading
