"""Best / median / worst cases as one grid image, from what evaluate left in a run folder.

Each case is the overlay evaluate saved (``eval/SPLIT/overlays/NAME.png``) or, when only the
predicted mask was saved, an overlay composed from the source image and that mask. Saved masks
are read back by the run's mask scheme (``RUN/config.yaml``: 0/255 binary, label maps,
palette or colour masks, :meth:`medtl.data.masks.scheme.MaskScheme.to_index`; a multilabel
run's one 0/255 mask per structure, ``NAME_<structure>.png``) and each label or structure is
coloured as evaluate's overlays colour it (:func:`medtl.inference.engine.overlay`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medtl import plots
from medtl.data.masks.scheme import MaskScheme
from medtl.data.readers.io import read_array, read_image
from medtl.reporting.html import png_bytes
from medtl.utils.errors import MedtlError
from medtl.utils.files import to_float


def _scheme(split_dir: Path) -> MaskScheme | None:
    """The mask scheme of the run that owns ``RUN/eval/SPLIT`` (None: no config.yaml)."""
    from medtl.runs.folder import run_scheme

    run = Path(split_dir).parent.parent
    if not (run / "config.yaml").is_file():
        return None
    return run_scheme(run)


def _mask_png(path: Path, scheme: MaskScheme | None) -> np.ndarray | None:
    """A saved predicted mask as bool (binary) or label indices (``uint8``); None when it is
    missing or does not fit the scheme. Without the run's scheme (a fold ensemble's folder),
    grey values other than 0/255 are labels in the order of their values, RGB is binary."""
    if not path.is_file():
        return None
    arr = read_array(path)
    if scheme is None:
        values = tuple(int(v) for v in np.unique(arr) if v)
        grey_labels = arr.ndim == 2 and not set(values) <= {255}
        scheme = MaskScheme("labels", values) if grey_labels else MaskScheme("binary")
    try:
        return scheme.to_index(arr, path)
    except MedtlError:  # a stray file: the report shows the other cases
        return None


def _structures_png(path: Path, scheme: MaskScheme) -> np.ndarray | None:
    """A multilabel run's saved masks (``<name>_<structure>.png``, one per structure) as one
    ``uint8`` map with structure ``k`` as index ``k + 1`` for the overlay (a later structure
    drawn over an earlier one where they overlap); None when one is missing."""
    from medtl.inference.engine import structure_paths

    out = None
    for k, file in enumerate(structure_paths(path, scheme), 1):
        plane = _mask_png(file, MaskScheme("binary"))
        if plane is None or (out is not None and plane.shape != out.shape):
            return None
        out = np.zeros(plane.shape, np.uint8) if out is None else out
        out[plane] = k
    return out


def case_image(row: Mapping[str, str], split_dir: Path) -> np.ndarray | None:
    """The saved overlay of one evaluated image, or one composed from its predicted mask."""
    from medtl.inference.engine import overlay, safe_name

    stem = Path(row["image"]).stem
    name = safe_name(f"{row['class'] + '_' if row.get('class') else ''}{stem}")
    saved = split_dir / "overlays" / f"{name}.png"
    if saved.is_file():
        return np.asarray(Image.open(saved).convert("RGB"))
    scheme = _scheme(split_dir)
    path = split_dir / "predictions" / f"{name}_pred.png"
    pred = (
        _structures_png(path, scheme) if scheme and scheme.multilabel else _mask_png(path, scheme)
    )
    if pred is None or not Path(row["image"]).is_file():
        return None
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
