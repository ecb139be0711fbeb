"""What a data root holds, for the messages that must say it: the first levels of the tree
with file counts and kinds (:func:`describe_tree`), the nearest layout and the one change
that makes it fit (:func:`nearest_layout`), and what a layout found but did not use
(:func:`unused_lines`).

Example::

    >>> from pathlib import Path
    >>> kinds({Path("a.png"), Path("b.png"), Path("c.nii.gz")})
    '2 .png, 1 .nii.gz'
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from medtl.data.layouts.base import MASK_EXTS, SPLIT_DIRS, Sample, mask_stem, split_of

#: files that describe a data set rather than hold its pictures: never "not used"
META_FILES = ("dataset.json", "labels.yaml", "labels.yml", "labels.json")
_MAX_ENTRIES = 200_000  # stop counting beyond this (a message, not an inventory)
_SHOW = 8  # tree lines and unused lines shown in an error
#: the tail of an :func:`unused_lines` line for files left beside used ones
PARTLY = " (beside used files)"


def suffix(path: Path) -> str:
    """The file kind: ``.nii.gz`` for compressed NIfTI, else the lower-case suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else (path.suffix.lower() or "(no extension)")


def kinds(files: Iterable[Path]) -> str:
    """``'2 .png, 1 .nii.gz'``: counts per file kind, most common first."""
    counts = Counter(suffix(f) for f in files)
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _files_below(folder: Path) -> list[Path]:
    out: list[Path] = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(base) / f for f in files if not f.startswith(".")]
        if len(out) > _MAX_ENTRIES:
            break
    return out


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def describe_tree(root: Path, depth: int = 2) -> str:
    """The first ``depth`` levels under ``root``: ``Training/glioma/ (1321 .jpg); ...``."""
    lines: list[str] = []

    def walk(folder: Path, level: int) -> None:
        subs = _subdirs(folder)
        here = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
        rel = folder.relative_to(root).as_posix() + "/" if folder != root else "./"
        if here or not subs or level == depth:
            files = _files_below(folder) if level == depth else here
            what = kinds(files) or "empty"
            more = f", {len(subs)} folders" if subs and level < depth else ""
            lines.append(f"{rel} ({what}{more})")
        if level < depth:
            for d in subs:
                walk(d, level + 1)

    walk(root, 0)
    shown = lines[:_SHOW] + ([f"... {len(lines) - _SHOW} more"] if len(lines) > _SHOW else [])
    return "; ".join(shown)


def _has_images(folder: Path) -> bool:
    return any(f.suffix.lower() in MASK_EXTS for f in folder.iterdir() if f.is_file())


def nearest_layout(root: Path) -> str:
    """The layout nearest to what ``root`` holds and the one change that makes it fit,
    else the CSV manifest to write."""
    subs = _subdirs(root)
    named = {d.name.lower(): d for d in subs}
    if hint := _paired_hint(root):
        return hint
    odd_splits = [d for d in subs if split_of(d.name) is None and _looks_like_split(d.name)]
    if odd_splits:
        d = odd_splits[0]
        return f"nearest layout: a split folder; rename {d.name}/ to {_split_guess(d.name)}/"
    if _has_images(root) and "images" not in named:
        return (
            "nearest layout: imagefolder; move the images into one folder per class "
            "(<class>/*.png), or into images/ with their masks in masks/"
        )
    deep = [d for d in subs if not _has_images(d) and any(_has_images(s) for s in _subdirs(d))]
    if deep and split_of(deep[0].name) is None:
        return (
            f"nearest layout: imagefolder/paired one level up; set data.root={root / deep[0].name}"
        )
    return (
        f"or write {root / 'data.csv'} with columns image,mask,label,group,split "
        "(paths relative to it; data.layout=csv)"
    )


def _pictures(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in MASK_EXTS)


def _paired_hint(root: Path) -> str | None:
    """``images/`` beside a folder of masks under another name, in ``root`` or in one of
    its split folders: rename that folder to ``masks/`` when the names pair, else the
    manifest to write (DRIVE: ``21_training.tif`` vs ``1st_manual/21_manual1.gif``)."""
    for base in (root, *(d for d in _subdirs(root) if split_of(d.name))):
        subs = _subdirs(base)
        images = next((d for d in subs if d.name.lower() == "images"), None)
        others = [o for o in subs if o is not images and _has_images(o)] if images else []
        if images is None or not others:
            continue
        rel = "" if base == root else f"{base.name}/"
        pics, marks = _pictures(images), _pictures(others[0])
        stems = {p.stem for p in pics}
        if not pics or any(m.stem in stems or (mask_stem(m) or ("",))[0] in stems for m in marks):
            return (
                f"nearest layout: paired; rename {rel}{others[0].name}/ to masks/ "
                "(a mask named like its image)"
            )
        return (
            f"nearest layout: paired, but {rel}{others[0].name}/ ({marks[0].name}) is not "
            f"named like {rel}images/ ({pics[0].name}); pair them in "
            f"{root / 'data.csv'} with columns image,mask,split (paths relative to it; "
            "data.layout=csv)"
        )
    return None


def _looks_like_split(name: str) -> bool:
    low = name.lower()
    return any(low.startswith(p) or low.endswith(p) for p in ("train", "val", "test", "dev"))


def _split_guess(name: str) -> str:
    low = name.lower()
    for split in SPLIT_DIRS:
        if split in low or (split == "val" and "dev" in low):
            return split
    return "train"


def _used(samples: Sequence[Sample]) -> set[str]:
    from medtl.data.refs import source_file

    files = {source_file(s.image) for s in samples}
    files |= {source_file(m) for s in samples for m in s.masks}
    return {os.path.abspath(f) for f in files}


def _folders_of(files: Iterable[str]) -> set[str]:
    """Every folder above the absolute paths ``files`` (each chain walked once)."""
    out: set[str] = set()
    for f in files:
        d = os.path.dirname(f)
        while d not in out:
            out.add(d)
            up = os.path.dirname(d)
            if up == d:
                break
            d = up
    return out


def unused_lines(root: Path, samples: Sequence[Sample], layout: str = "") -> list[str]:
    """One line per folder under ``root`` holding no used file (``Training/extra/: 12
    files (12 .jpg) not used``) and per folder whose files are partly unused; data-set
    description files (:data:`META_FILES`, a root CSV manifest) are not listed."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        return []
    used = _used(samples)  # plain strings: a data set's thousands of paths compare fast
    used_dirs = _folders_of(used)
    lines: list[str] = []
    stack = [root]
    while stack and len(lines) < 100:
        folder = stack.pop()
        rel = "./" if folder == root else folder.relative_to(root).as_posix() + "/"
        if str(folder) not in used_dirs:
            files = _files_below(folder)
            if files:
                lines.append(f"{rel}: {_n_files(files)} not used")
            continue
        with os.scandir(folder) as entries:
            left = [
                Path(e.path)
                for e in entries
                if e.path not in used and not e.name.startswith(".") and e.is_file()
            ]
        left = [f for f in left if not _meta(f, root)]
        if left:
            lines.append(f"{rel}: {_n_files(left)} not used{PARTLY}")
        stack += reversed(_subdirs(folder))
    return lines


def _n_files(files: Sequence[Path]) -> str:
    return f"{len(files)} file{'s' if len(files) != 1 else ''} ({kinds(files)})"


def _meta(path: Path, root: Path) -> bool:
    if path.name.lower() in META_FILES:
        return True
    return path.parent == root and path.suffix.lower() in (".csv", ".md", ".txt")


def short(lines: Sequence[str]) -> str:
    """The first few of ``lines`` joined by ``; `` (``... N more`` after them)."""
    more = f"; ... {len(lines) - _SHOW} more" if len(lines) > _SHOW else ""
    return "; ".join(lines[:_SHOW]) + more
