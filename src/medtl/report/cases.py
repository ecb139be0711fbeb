"""Best / median / worst cases as one grid image, from what evaluate left in a run folder.

Each case is the overlay evaluate saved (``eval/SPLIT/overlays/NAME.png``) or, when only the
predicted mask was saved, an overlay composed from the source image and that mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medtl import plots
from medtl.io_utils import to_float
from medtl.report.html import png_bytes


def _mask_png(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.asarray(Image.open(path).convert("L")) > 127


def case_image(row: Mapping[str, str], split_dir: Path) -> np.ndarray | None:
    """The saved overlay of one evaluated image, or one composed from its predicted mask."""
    from medtl.inference import overlay, safe_name

    stem = Path(row["image"]).stem
    name = safe_name(f"{row['class'] + '_' if row.get('class') else ''}{stem}")
    saved = split_dir / "overlays" / f"{name}.png"
    if saved.is_file():
        return np.asarray(Image.open(saved).convert("RGB"))
    pred = _mask_png(split_dir / "predictions" / f"{name}_pred.png")
    if pred is None or not Path(row["image"]).is_file():
        return None
    from medtl.data.io import read_image

    image = read_image(row["image"])
    if image.shape[:2] != pred.shape:
        return None
    return overlay(image, pred, None)


def overlay_grid_png(
    rows: Sequence[Mapping[str, str]],
    dirs: Sequence[Path],
    title: str,
    groups: Sequence[str] = ("best", "median", "worst"),
) -> bytes | None:
    """PNG of the chosen cases of per_image.csv ``rows`` (``dirs[i]``: the eval folder of row i);
    None when no case image can be found."""
    dice = [to_float(r.get("dice")) for r in rows]
    picked = plots.select_cases(dice, k=4)
    items = []
    for group in groups:
        for i in picked[group]:
            image = case_image(rows[i], dirs[i])
            if image is not None:
                items.append((f"{group}: {Path(rows[i]['image']).stem} Dice {dice[i]:.2f}", image))
    if not items:
        return None
    return png_bytes(plots.overlay_grid_figure(items, ncols=4, title=title))
