"""The Medical Segmentation Decathlon / nnU-Net data set folder, as published.

``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``, + ``labelsTs/``) and ``dataset.json``:

- an image is ``<case>_0000.<ext>`` (nnU-Net: one file per channel, ``_0000`` the first)
  or ``<case>.<ext>`` (MSD); its label is ``labelsTr/<case>.<ext>``; medtl reads channel
  ``0000`` and names the other channel files as not used;
- ``<ext>`` is a 2-D image (``.png``, ...: one sample per case) or NIfTI (``.nii.gz``:
  one sample per slice, read by :mod:`medtl.data.readers.volumes`, grouped by case);
- the label names come from ``dataset.json``'s ``labels`` (MSD ``{"1": "edema"}`` or
  nnU-Net v2 ``{"edema": 1}``), unless ``data.labels`` or ``labels.yaml`` names them;
- ``imagesTs/`` with ``labelsTs/`` is the pre-made test split (``imagesTr/`` is then
  ``train``); ``imagesTs/`` without labels is left out (listed as not used).

Example::

    >>> case_id("BRATS_001_0000.nii.gz"), case_id("la_003.nii.gz"), case_id("c7_0002.png")
    ('BRATS_001', 'la_003', 'c7')
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from medtl.data.layouts.base import MASK_EXTS, Sample, child, is_image
from medtl.utils.errors import DataError

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _base_name(path: str | Path) -> str:
    from medtl.data.readers.volumes import is_volume, volume_id

    return volume_id(path) if is_volume(path) else Path(path).stem


def case_id(path: str | Path) -> str:
    """The case of an image file: its name without extension and ``_NNNN`` channel suffix."""
    name = _base_name(path)
    m = _CHANNEL.match(name)
    return m.group("case") if m else name


def channel(path: str | Path) -> int:
    """The channel number of an image file (``_0001`` -> 1; no suffix -> 0)."""
    m = _CHANNEL.match(_base_name(path))
    return int(m.group("channel")) if m else 0


def is_msd(root: Path) -> bool:
    """``imagesTr/`` holds image or volume files."""
    images = child(root, "imagesTr")
    return images is not None and any(_is_case_file(p) for p in images.iterdir())


def _is_case_file(path: Path) -> bool:
    from medtl.data.readers.volumes import is_volume

    return is_volume(path) or is_image(path, MASK_EXTS)


def read_dataset_json(root: Path) -> dict[str, Any] | None:
    """``root/dataset.json`` as a mapping, None when absent; a broken file is a DataError."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not readable JSON ({exc.__class__.__name__}); fix or remove it"
        ) from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with 'labels'; fix or remove it")
    return doc


def dataset_labels(root: Path) -> dict[int, str] | None:
    """``{value: name}`` of the foreground labels in ``root/dataset.json`` (both the MSD
    ``{"0": "background", "1": "edema"}`` and the nnU-Net v2 ``{"background": 0}`` forms;
    region labels given as lists are left out), or None."""
    doc = read_dataset_json(Path(root)) if Path(root).is_dir() else None
    labels = (doc or {}).get("labels")
    if not isinstance(labels, dict):
        return None
    out: dict[int, str] = {}
    for key, value in labels.items():
        if str(key).strip().lstrip("-").isdigit():
            out[int(key)] = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[value] = str(key)
    out.pop(0, None)
    return out or None


def _cases(images: Path) -> dict[str, Path]:
    """Case id -> its channel-0 file."""
    return {case_id(p): p for p in sorted(images.iterdir()) if _is_case_file(p) and channel(p) == 0}


def _pairs(
    images: Path, labels: Path | None, problems: list[str]
) -> list[tuple[Path, Path | None]]:
    cases = _cases(images)
    if labels is None:
        return [(p, None) for p in cases.values()]
    found = {_base_name(p): p for p in sorted(labels.iterdir()) if _is_case_file(p)}
    pairs = []
    for case, img in cases.items():
        lab = found.pop(case, None)
        if lab is None:
            problems.append(f"image without mask: {img} (expected {labels / case}.*)")
            continue
        pairs.append((img, lab))
    problems += [
        f"mask without image: {p} (no {images / _base_name(p)}_0000.*)" for p in found.values()
    ]
    return pairs


def discover_msd(
    root: Path, slice_axis: int = 2, empty_slice_fraction: float = 1.0
) -> tuple[list[Sample], list[str]]:
    """The ``msd`` layout (module docstring): 2-D cases or NIfTI slices, test from ``imagesTs/``."""
    from medtl.data.layouts.folders import volume_samples
    from medtl.data.readers.volumes import is_volume

    problems: list[str] = []
    tr_images = child(root, "imagesTr")
    if tr_images is None:
        return [], []
    ts_images, ts_labels = child(root, "imagesTs"), child(root, "labelsTs")
    labelled_test = ts_images is not None and ts_labels is not None
    parts = [(tr_images, child(root, "labelsTr"), "train" if labelled_test else None)]
    if labelled_test:
        parts.append((ts_images, ts_labels, "test"))
    samples: list[Sample] = []
    for images, labels, split in parts:
        pairs = _pairs(images, labels, problems)
        volumes = [p for p in pairs if is_volume(p[0])]
        sliced = volume_samples(volumes, split, slice_axis, empty_slice_fraction)
        samples += [replace(x, group=case_id(x.meta["volume"])) for x in sliced]
        for img, lab in pairs:
            if not is_volume(img):
                masks = (lab,) if lab is not None else ()
                samples.append(Sample(img, masks, split=split))
    return samples, problems


def names_from_dataset(data_cfg: Any, ds: Any) -> None:
    """Label names the data set gives itself (an MSD ``dataset.json``) become
    ``data.labels`` when neither ``data.labels`` nor a ``labels.yaml`` names them, so
    config.yaml records them; only the values the masks hold are kept."""
    from medtl.data.masks.scan import mask_files, scan
    from medtl.data.masks.scheme import names_file

    if not ds.label_names or getattr(data_cfg, "labels", None) or names_file(ds.root):
        return
    if getattr(data_cfg, "mask_mode", "auto") not in ("auto", "labels"):
        return
    found = {v for f in scan(mask_files(ds.samples)) for v in f.values if isinstance(v, int)}
    if found <= {0, 1}:
        return  # one foreground label: a binary mask, named or not
    named = {v: n for v, n in sorted(ds.label_names.items()) if v in found}
    if named:
        data_cfg.labels = ",".join(f"{v}:{n}" for v, n in named.items())
