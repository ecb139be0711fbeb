"""Duplicate detection per modality: same-image precision and recall, links between patients.

What it measures (:mod:`medtl.data.duplicates`: hash candidates, then pixel verification):

- **positives**: synthetic edits of real images, each added to the data set beside its
  original: crop 5-25 % (half of the crops scaled back to the original's size), rescale
  0.5-2x, JPEG quality 50-95, calipers and text drawn on, brightness/contrast +-20 %,
  rotation +-5 degrees. Recall = edited copies linked to
  their original as ``same``; precision = same-image links of a copy that point to its
  own original (or to an image already linked to it, or to a copy of either) over all
  links of the copies;
- **BUSI's known duplicate pairs**: the 185 pairs the previous detector (pHash distance
  <= 4) listed, each checked by correlation or by eye: recall = pairs the new detector
  puts in one group;
- **negatives**: different patients in the standard pose: every link among them is a
  false link (chest X-rays; ``medtl synth`` phantoms; small pictures of one template,
  each patient's shapes moved by up to 4 % of the side, each with its own noise; slices
  of synthetic volumes, one per patient, all of one phantom shape).

Data (nothing here is committed):

- BUSI at ``../shared/data/busi/Dataset_BUSI_with_GT`` (780 images, 256 px);
- chest X-rays: ``Datasets/Chest_x-ray/*.jpg`` of github.com/pi-null-mezon/OpenIST at
  commit 0a3fceb1ac58e1848f994ee6ec226c58e55d70b0 (275 normal PA chest X-rays, 500x500
  JPEG, from chestx-ray.com's "normal CXR" teaching module; the repository states no
  licence, so the images are read from a local copy and never redistributed). Two of
  them (``101-210`` and ``201-210``) are the same file: a true exact duplicate;
- fundus: DRIVE (Staal et al. 2004), ``DRIVE/{training,test}/images/*.tif`` of
  github.com/orobix/retina-unet at commit 1ccd6f86a49e00a3ff8d9925bb3c78d818ed0e87 (40 eyes
  of 40 patients, 565x584; research use under DRIVE's terms, no licence file);
- brain MRI: ``Testing/*/*.jpg`` of github.com/KomalChaudhari8/BRAIN_TUMOR_APP at commit
  1fac2c320ad3f98cb71ce79d5d1490a953eaa1ec (a copy of the Kaggle "Brain Tumor MRI
  Dataset"; no licence file), every 4th image (328); no patient identifiers, so edits only;
- phantoms and volumes are generated here.

Measured (``--cxr --fundus --brain`` with those copies, ``--n 30 --seed 0``; recall /
precision):

    edit        BUSI           chest X-ray    fundus         brain MRI
    crop        1.000 / 1.000  0.967 / 1.000  1.000 / 1.000  0.933 / 1.000
    rescale     1.000 / 1.000  1.000 / 1.000  1.000 / 1.000  1.000 / 1.000
    jpeg        1.000 / 1.000  1.000 / 1.000  1.000 / 1.000  1.000 / 1.000
    annotate    1.000 / 0.977  1.000 / 1.000  1.000 / 1.000  0.967 / 1.000
    brightness  1.000 / 1.000  1.000 / 1.000  1.000 / 1.000  1.000 / 1.000
    rotate      1.000 / 1.000  1.000 / 1.000  1.000 / 1.000  1.000 / 1.000

BUSI: 184 of the previous 185 pairs (99.5 %) kept together, 150 groups of at most 4,
benign (433) = malignant (145) found; the wrong annotate link joins a copy of benign (108)
to benign (114), neighbouring frames of one sweep. Links between different patients: 0
among the 275 chest X-rays (the one exact pair excluded), 0 among DRIVE's 40 eyes, 0 among
120 phantoms (128 px), 0 among 40 pictures of one template at 32 px and 40 at 64 px, 0
among 40 volume slices. The missed crops are never proposed: other images' window hashes
lie as near as the original's (chest X-rays in one pose), or the crop's hash lies beyond
the window bound (brain MRI: 12 bits). Turned fundus copies and the crops whose window
was a few px off are verified once the alignment is refined by ECC (without it: fundus
rotations 0.833, crops 0.900). Candidate pairs: 371 among BUSI's 780 images, 2,951 among
the 275 chest X-rays (each image in 21.5 on average, 63 at most).

Usage:
    python benchmarks/duplicates.py [--busi DIR] [--cxr DIR] [--fundus DRIVE] [--brain DIR]
        [--brain-step 4] [--n 60] [--seed 0]
stdout: one line per modality and edit, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from medtl.data.duplicates.hashes import hashes_of
from medtl.data.duplicates.links import Link, find_links, link_groups
from medtl.data.layouts import Sample

EDITS = ("crop", "rescale", "jpeg", "annotate", "brightness", "rotate")


def edit(a: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One synthetic edit of a grey uint8 image."""
    h, w = a.shape
    if kind == "crop":  # half of the crops resized back to the original's size
        f = rng.uniform(0.05, 0.25)
        dy, dx = int(h * f * rng.uniform()), int(w * f * rng.uniform())
        crop = a[dy : dy + int(h * (1 - f)), dx : dx + int(w * (1 - f))]
        if rng.uniform() < 0.5:
            return np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))
        return crop
    if kind == "rescale":
        s = rng.uniform(0.5, 2.0)
        return np.asarray(Image.fromarray(a).resize((int(w * s), int(h * s)), Image.BILINEAR))
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=int(rng.integers(50, 96)))
        return np.asarray(Image.open(buf))
    if kind == "annotate":
        im = Image.fromarray(a.copy())
        d = ImageDraw.Draw(im)
        for _ in range(3):
            x, y = int(rng.integers(10, w - 10)), int(rng.integers(10, h - 10))
            d.line([(x - 5, y), (x + 5, y)], fill=255)
            d.line([(x, y - 5), (x, y + 5)], fill=255)
        d.text((5, 5), "LT BREAST 12:00", fill=255)
        return np.asarray(im)
    if kind == "brightness":
        gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.2, 0.2) * 255 * 0.3
        return np.clip(a * gain + offset, 0, 255).astype(np.uint8)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), 1.0)
    return cv2.warpAffine(a, m, (w, h))


def _links(images: list[np.ndarray]) -> list[Link]:
    """Verified links among in-memory images (read from the list, not from disk)."""
    samples = [Sample(Path(f"mem/{k}.png")) for k in range(len(images))]
    hashes = [hashes_of(a) for a in images]
    by_path = {s.image: a for s, a in zip(samples, images, strict=True)}
    return find_links(samples, hashes, read=lambda s: by_path[s.image])


def edited_copies(originals: list[np.ndarray], n: int, seed: int) -> dict[str, dict]:
    """Per edit: recall and precision of ``n`` edited copies added beside the originals."""
    rng = np.random.default_rng(seed)
    n = min(n, len(originals))
    base = _links(originals)
    known = link_groups(len(originals), base)
    group_of = {i: k for k, g in enumerate(known) for i in g}
    out = {}
    for kind in EDITS:
        picks = rng.choice(len(originals), n, replace=False)
        images = list(originals) + [edit(originals[k], kind, rng) for k in picks]
        links = [x for x in _links(images) if x.j >= len(originals) and x.relation == "same"]
        found, right = set(), 0
        for x in links:  # x.i: an original, or another copy (then its original counts)
            src = int(picks[x.j - len(originals)])
            other = x.i if x.i < len(originals) else int(picks[x.i - len(originals)])
            ok = other == src or (src in group_of and group_of.get(other) == group_of[src])
            right += ok
            found.add(x.j) if x.i == src else None
        out[kind] = {
            "recall": len(found) / n,
            "precision": right / len(links) if links else 1.0,
            "n": n,
        }
    return out


def negatives(images: list[np.ndarray], allowed: set[tuple[int, int]] = frozenset()) -> dict:
    """Links among images of different patients (``allowed``: known true duplicate pairs)."""
    t0 = time.perf_counter()
    links = [x for x in _links(images) if (x.i, x.j) not in allowed]
    return {
        "images": len(images),
        "false_links": len(links),
        "false_same": sum(x.relation == "same" for x in links),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def busi_known_pairs(root: Path) -> tuple[list[np.ndarray], dict]:
    """BUSI's images (grey) and the recall of the previous detector's 185 pairs."""
    from medtl.data.duplicates.hashes import near_pairs, phash

    files = sorted(f for f in root.glob("*/*.png") if "_mask" not in f.name)
    images = [np.asarray(Image.open(f).convert("L")) for f in files]
    old = near_pairs([phash(a) for a in images], 4)
    t0 = time.perf_counter()
    links = _links(images)
    seconds = time.perf_counter() - t0
    group_of = {i: k for k, g in enumerate(link_groups(len(images), links)) for i in g}
    kept = sum(int(i) in group_of and group_of[int(i)] == group_of.get(int(j)) for i, j in old)
    return images, {
        "images": len(images),
        "old_pairs": len(old),
        "old_pairs_recall": kept / max(1, len(old)),
        "links": len(links),
        "groups": len(set(group_of.values())),
        "largest_group": max((len(g) for g in link_groups(len(images), links)), default=0),
        "cross_class_433_145": _linked(files, links, "benign (433).png", "malignant (145).png"),
        "seconds": round(seconds, 1),
    }


def _linked(files: list[Path], links: list[Link], a: str, b: str) -> bool:
    names = [f.name for f in files]
    if a not in names or b not in names:
        return False
    i, j = sorted((names.index(a), names.index(b)))
    return any(x.i == i and x.j == j and x.relation == "same" for x in links)


def phantoms(n: int, size: int) -> list[np.ndarray]:
    """``medtl synth`` phantoms (one per patient), grey."""
    from medtl.data.phantoms import make_phantoms

    root = Path(tempfile.mkdtemp()) / "p"
    make_phantoms(root, n=n, size=size, seed=0)
    files = sorted(f for f in root.rglob("*.png") if "_mask" not in f.name)
    return [np.asarray(Image.open(f).convert("L")) for f in files]


def jittered(n: int, size: int) -> list[np.ndarray]:
    """Small pictures of one template (lungs, heart, clavicles as flat ellipses and bars),
    each patient's shapes moved by up to 4 % of the side, each with its own noise (std 6)."""
    out = []
    y, x = np.mgrid[:size, :size] / size
    for p in range(n):
        rng = np.random.default_rng(p)
        j = rng.uniform(-0.04, 0.04, 6)
        img = np.full((size, size), 150.0)
        for cx in (0.30 + j[1], 0.70 + j[2]):
            img[((y - 0.48 - j[0]) / 0.30) ** 2 + ((x - cx) / 0.14) ** 2 <= 1] = 60
        img[((y - 0.66 - j[3]) / 0.14) ** 2 + ((x - 0.55 - j[4]) / 0.16) ** 2 <= 1] = 200
        bar = np.abs(y - 0.22 - j[5]) <= max(1 / size, 0.05)
        img[bar & (((x >= 0.12) & (x < 0.46)) | ((x >= 0.54) & (x < 0.88)))] = 240
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def volume_slices(patients: int, size: int = 96) -> list[np.ndarray]:
    """The middle axial slice of one synthetic head volume per patient: one phantom shape
    (ellipsoids), per-patient smooth deformation and texture, acquisition noise."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    out = []
    z, y, x = np.mgrid[:size, :size, :size] / size - 0.5
    for p in range(patients):
        rng = np.random.default_rng(100 + p)
        disp = [gaussian_filter(rng.normal(0, 1, (size,) * 3), 6) * 60 for _ in range(3)]
        c = np.stack([z, y, x]) * size + size / 2 + np.stack(disp)
        head = (x / 0.42) ** 2 + (y / 0.36) ** 2 + (z / 0.45) ** 2 < 1
        inner = (x / 0.3) ** 2 + (y / 0.25) ** 2 + (z / 0.35) ** 2 < 1
        vol = 150.0 * head + 60.0 * inner
        vol = map_coordinates(vol, c, order=1) + gaussian_filter(rng.normal(0, 40, vol.shape), 1.2)
        vol += rng.normal(0, 5, vol.shape)
        out.append(np.clip(vol[size // 2], 0, 255).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busi", type=Path, default=Path("../shared/data/busi/Dataset_BUSI_with_GT"))
    ap.add_argument("--cxr", type=Path, default=None, help="folder of the OpenIST chest X-rays")
    ap.add_argument("--fundus", type=Path, default=None, help="DRIVE's root (training/, test/)")
    ap.add_argument("--brain", type=Path, default=None, help="a folder of brain MRI slices")
    ap.add_argument("--brain-step", type=int, default=4, help="take every k-th brain image")
    ap.add_argument("--n", type=int, default=60, help="edited copies per edit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    report: dict = {}
    if args.busi.is_dir():
        images, known = busi_known_pairs(args.busi)
        _show("busi known", known)
        report["busi"] = {"known": known, "edits": _edits("busi", images, args)}
    if args.cxr and args.cxr.is_dir():
        files = sorted(args.cxr.glob("*.jpg"))
        cxr = [np.asarray(Image.open(f).convert("L")) for f in files]
        names = [f.name for f in files]
        same = {tuple(sorted((names.index(a), names.index(b)))) for a, b in _CXR_DUPLICATES}
        neg = _show("chest_xray negatives", negatives(cxr, same))
        report["chest_xray"] = {"negatives": neg, "edits": _edits("chest_xray", cxr, args)}
    if args.fundus and args.fundus.is_dir():  # DRIVE: 40 eyes of 40 patients
        files = sorted(args.fundus.glob("*/images/*.tif"))
        fundus = [np.asarray(Image.open(f).convert("L")) for f in files]
        neg = _show("fundus negatives", negatives(fundus))
        report["fundus"] = {"negatives": neg, "edits": _edits("fundus", fundus, args)}
    if args.brain and args.brain.is_dir():  # every 4th image: patients unknown, edits only
        files = [
            f for f in sorted(args.brain.rglob("*.jpg")) if ".ipynb_checkpoints" not in f.parts
        ]
        files = files[:: args.brain_step]
        brain = [np.asarray(Image.open(f).convert("L")) for f in files]
        print(f"brain_mri: {len(brain)} images", flush=True)
        report["brain_mri"] = {"images": len(brain), "edits": _edits("brain_mri", brain, args)}
    report["phantoms"] = {"negatives": _show("phantoms negatives", negatives(phantoms(120, 128)))}
    for size in (32, 64):
        neg = _show(f"jittered {size} px negatives", negatives(jittered(40, size)))
        report[f"jittered_{size}"] = {"negatives": neg}
    vols = negatives(volume_slices(40))
    report["volume_slices"] = {"negatives": _show("volume_slices negatives", vols)}
    print(json.dumps(report))


def _show(title: str, numbers: dict) -> dict:
    print(f"{title}: {numbers}", flush=True)
    return numbers


def _edits(modality: str, images: list[np.ndarray], args: argparse.Namespace) -> dict:
    out = edited_copies(images, args.n, args.seed)
    for kind, e in out.items():
        print(f"{modality} {kind}: recall {e['recall']:.3f} precision {e['precision']:.3f}")
    return out


_CXR_DUPLICATES = [("101-210-500-500-100.jpg", "201-210-500-500-100.jpg")]

if __name__ == "__main__":
    main()
