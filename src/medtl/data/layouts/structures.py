"""The ``structures`` layout: one binary mask per anatomical structure, structures may overlap
(a chest X-ray's heart, lungs and clavicles).

Two forms, below ``images/`` (and optional ``train/``/``test/`` split folders):

- ``masks/<structure>/<name>.*`` (or ``<name>_mask.*``): one folder per structure;
- ``masks/<name>_<structure>.*``: one flat folder, the structure after the image's name
  (at least two structures, so that ``<name>_<something>`` alone is not mistaken for one).

Every image needs a mask in every structure; an image missing one (or a mask without its
image) is a problem line naming the file, which stops training. Each sample's masks come
in the structure order (names sorted) and ``meta["structures"]`` names them: the mask
scheme ``multilabel`` (:mod:`medtl.data.masks.scheme`) reads them as one bit per structure,
and the model gets one sigmoid channel per structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # medtl.data.layouts registers this layout: imported lazily here
    from medtl.data.layouts.base import Sample


def _structure_dirs(mask_dir: Path) -> list[Path]:
    return sorted(d for d in mask_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _by_name(folder: Path) -> dict[str, Path]:
    """``{image stem: mask}`` of a structure folder (``name.png`` or ``name_mask.png``)."""
    from medtl.data.layouts.base import MASK_EXTS, images_in, mask_stem

    out = {}
    for m in images_in(folder, MASK_EXTS):
        parsed = mask_stem(m)
        out[parsed[0] if parsed else m.stem] = m
    return out


def _flat(mask_dir: Path, stems: list[str]) -> dict[str, dict[str, Path]]:
    """``{structure: {image stem: mask}}`` of ``<name>_<structure>.*`` files (the longest
    image stem that prefixes the file's stem); files that fit no image are left out."""
    from medtl.data.layouts.base import MASK_EXTS, images_in

    by_length = sorted(stems, key=len, reverse=True)
    out: dict[str, dict[str, Path]] = {}
    for m in images_in(mask_dir, MASK_EXTS):
        stem = next((s for s in by_length if m.stem.startswith(s + "_")), None)
        if stem is not None:
            out.setdefault(m.stem[len(stem) + 1 :], {})[stem] = m
    return out


def _structure_masks(img_dir: Path, mask_dir: Path) -> dict[str, dict[str, Path]] | None:
    """The masks by structure and image stem in either form, None when neither fits."""
    from medtl.data.layouts.base import MASK_EXTS, images_in

    folders = _structure_dirs(mask_dir)
    if folders and not images_in(mask_dir, MASK_EXTS):
        return {d.name: _by_name(d) for d in folders}
    stems = [p.stem for p in images_in(img_dir)]
    flat = _flat(mask_dir, stems)
    plain = {m.stem for m in images_in(mask_dir, MASK_EXTS)} & {
        *stems,
        *(s + "_mask" for s in stems),
    }
    if len(flat) >= 2 and not plain:
        return flat
    return None


def _bases(root: Path) -> list[tuple[Path, str | None]]:
    from medtl.data.layouts.base import split_roots

    return [
        (b, s) for b, s in split_roots(root) if (b / "images").is_dir() and (b / "masks").is_dir()
    ]


def looks_like_structures(root: Path) -> bool:
    """Auto-detection: ``images/`` + ``masks/`` in one of the two forms."""
    if not root.is_dir():
        return False
    return any(_structure_masks(b / "images", b / "masks") is not None for b, _ in _bases(root))


def _pair(
    img_dir: Path, by_structure: dict[str, dict[str, Path]], names: list[str], split: str | None
) -> tuple[list[Sample], list[str]]:
    from medtl.data.layouts.base import Sample, images_in

    samples, problems = [], []
    for img in images_in(img_dir):
        missing = [n for n in names if img.stem not in by_structure.get(n, {})]
        if missing:
            where = img_dir.parent / "masks" / missing[0]
            problems.append(
                f"image without mask: {img} has no mask of structure '{missing[0]}' "
                f"(expected {where / img.stem}.png or {img_dir.parent / 'masks' / img.stem}_{missing[0]}.png)"
            )
            continue
        masks = tuple(by_structure[n].pop(img.stem) for n in names)
        samples.append(Sample(img, masks, split=split, meta={"structures": tuple(names)}))
    for name in names:
        for stem, m in by_structure.get(name, {}).items():
            problems.append(f"mask without image: {m} (no {img_dir / stem}.*)")
    return samples, problems


def discover_structures(root: str | Path) -> tuple[list[Sample], list[str]]:
    """The ``structures`` layout (module docstring): samples and problem lines."""
    root = Path(root)
    found = []
    for base, split in _bases(root):
        masks = _structure_masks(base / "images", base / "masks")
        if masks is not None:
            found.append((base, split, masks))
    names = sorted({n for _, _, m in found for n in m})
    samples: list[Sample] = []
    problems: list[str] = []
    for base, split, masks in found:
        got, lines = _pair(base / "images", masks, names, split)
        samples += got
        problems += lines
    return samples, problems
