"""Tests for the phantom generator (medtl.data.phantoms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medtl.data.layouts import discover
from medtl.data.phantoms import (
    CLASSES,
    class_counts,
    make_imagefolder,
    make_phantoms,
    phantom_sample,
)
from medtl.utils.errors import MedtlError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _samples(cls: str, size: int = 96, k: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    return [phantom_sample(np.random.default_rng([11, i]), size, cls) for i in range(k)]


@pytest.fixture(scope="module")
def phantoms48(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("ph") / "data", n=12, size=48, seed=3)


def test_class_counts_follow_busi_proportions() -> None:
    assert class_counts(120) == {"benign": 67, "malignant": 32, "normal": 21}
    assert class_counts(780) == {"benign": 437, "malignant": 210, "normal": 133}
    assert class_counts(3) == {"benign": 1, "malignant": 1, "normal": 1}
    assert class_counts(1) == {"benign": 1, "malignant": 0, "normal": 0}
    for n in range(1, 60):
        counts = class_counts(n)
        assert sum(counts.values()) == n
        if n >= 3:
            assert min(counts.values()) >= 1
            assert counts["benign"] >= counts["malignant"] >= counts["normal"]


def test_files_counts_and_format(phantoms48: Path) -> None:
    assert phantoms48.name == "data"
    expected = class_counts(12)
    for cls in CLASSES:
        images = sorted(p for p in (phantoms48 / cls).glob("*.png") if "_mask" not in p.name)
        masks = sorted((phantoms48 / cls).glob("*_mask.png"))
        assert len(images) == len(masks) == expected[cls]
        assert images[0].name == f"{cls}_0001.png"
        img, mask = Image.open(images[0]), Image.open(masks[0])
        assert (img.format, img.mode, img.size) == ("PNG", "L", (48, 48))
        assert (mask.mode, mask.size) == ("L", (48, 48))
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert not list(phantoms48.rglob("*.tmp"))


def test_discover_finds_class_masks(phantoms48: Path) -> None:
    ds = discover(phantoms48)
    assert ds.layout == "class_masks"
    assert ds.classes == ["benign", "malignant", "normal"]
    assert len(ds.samples) == 12 and not ds.problems
    assert all(len(s.masks) == 1 for s in ds.samples)


def test_deterministic_and_seed_dependent(tmp_path: Path, phantoms48: Path) -> None:
    again = _files(make_phantoms(tmp_path / "a", n=12, size=48, seed=3))
    assert again == _files(phantoms48)
    other = _files(make_phantoms(tmp_path / "b", n=12, size=48, seed=4))
    assert other.keys() == again.keys()
    assert sum(other[k] != again[k] for k in again) >= 12  # every image differs
    # Image i does not depend on n.
    more = _files(make_phantoms(tmp_path / "c", n=20, size=48, seed=3))
    assert all(more[k] == again[k] for k in again)


def test_imagefolder_has_same_images_without_masks(tmp_path: Path, phantoms48: Path) -> None:
    root = make_imagefolder(tmp_path / "if", n=12, size=48, seed=3)
    files = _files(root)
    assert not any("_mask" in k for k in files)
    with_masks = _files(phantoms48)
    assert files == {k: v for k, v in with_masks.items() if "_mask" not in k}
    ds = discover(root)
    assert ds.layout == "imagefolder" and len(ds.samples) == 12 and not ds.has_masks


def test_masks_per_class(tmp_path: Path) -> None:
    size = 64
    root = make_phantoms(tmp_path / "m", n=30, size=size, seed=0)
    for s in discover(root).samples:
        m = np.asarray(Image.open(s.masks[0])) > 0
        if s.label == "normal":
            assert not m.any()
            continue
        diam = 2 * np.sqrt(m.sum() / np.pi) / size  # equivalent diameter / side
        assert 0.08 <= diam <= 0.30, (s.image, diam)
        # fully inside: never touches the border
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def test_lesions_darker_than_surroundings() -> None:
    for cls in ("benign", "malignant"):
        ratios = []
        for img, m in _samples(cls):
            ring = ndimage.binary_dilation(m, iterations=3) & ~m
            ratios.append(img[m].mean() / img[ring].mean())
        assert max(ratios) < 0.85, (cls, ratios)
        assert np.mean(ratios) < 0.65, (cls, ratios)


def test_malignant_more_irregular_than_benign() -> None:
    def isoperimetric(m: np.ndarray) -> float:
        perimeter = (m & ~ndimage.binary_erosion(m)).sum()
        return perimeter**2 / m.sum()

    benign = [isoperimetric(m) for _, m in _samples("benign")]
    malignant = [isoperimetric(m) for _, m in _samples("malignant")]
    assert np.mean(malignant) > 1.5 * np.mean(benign), (benign, malignant)


def test_phantom_sample_shapes_and_extremes() -> None:
    for size in (16, 33):
        for cls in CLASSES:
            img, m = phantom_sample(np.random.default_rng(0), size, cls)
            assert img.shape == m.shape == (size, size)
            assert img.dtype == np.uint8 and m.dtype == bool
            assert m.any() == (cls != "normal")
    img, _ = phantom_sample(np.random.default_rng(1), 96, "normal")
    assert 60 < img.mean() < 200 and img.std() > 15  # neither blank nor saturated


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"n": 0}, "n="),
        ({"n": 2.5}, "n="),
        ({"size": 15}, "size="),
        ({"size": 4096}, "size="),
        ({"seed": -1}, "seed="),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, word: str) -> None:
    with pytest.raises(MedtlError, match=word) as info:
        make_phantoms(tmp_path / "x", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


def test_unknown_class_raises() -> None:
    with pytest.raises(MedtlError, match="benign, malignant, normal"):
        phantom_sample(np.random.default_rng(0), 32, "cyst")
