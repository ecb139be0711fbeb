"""Binary PNG masks with anti-aliased 0/255 edges (as OpenIST's chest X-ray lung masks are
published) read as binary, with the evidence in the decision; label maps whose values fill
regions stay label maps; ``NAME.jpg`` + ``NAME@.png`` side by side is a layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.audit.report import audit
from medtl.data.layouts import discover, mask_stem
from medtl.data.masks.scan import edge_share, resolve
from medtl.data.masks.scheme import NOISY_NOTE
from tests.data.conftest import save, smooth_image

SIZE = 48


class Cfg:
    mask_mode, labels, mask_colors = "auto", None, None


def anti_aliased_disc(cy: float, cx: float, r: float, levels: int = 4) -> np.ndarray:
    """A 0/255 disc drawn ``levels`` x ``levels`` times finer and box-averaged down: its
    edge pixels hold ``levels**2 - 1`` grey values between 0 and 255 (15 for 4: fewer than
    a label map may have)."""
    n = SIZE * levels
    yy, xx = (np.mgrid[:n, :n] + 0.5) / levels
    fine = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float64)
    coarse = fine.reshape(SIZE, levels, SIZE, levels).mean(axis=(1, 3))
    return np.round(coarse * 255).astype(np.uint8)


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


@pytest.fixture
def edges_set(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """OpenIST's shape: ``NAME.jpg`` + ``NAME@.png`` in one folder; three anti-aliased masks,
    one 0/255 mask with three stray grey pixels on its edge, two plain 0/255 masks."""
    masks = [anti_aliased_disc(20.3 + i, 22.7, 9.5 + i) for i in range(3)]
    stray = _disc(24, 24, 10).astype(np.uint8) * 255
    stray[24, 14], stray[14, 24], stray[33, 24] = 2, 11, 19  # the edge: a 0 and a 255 beside
    masks += [stray] + [_disc(22, 26, 8 + i).astype(np.uint8) * 255 for i in range(2)]
    root = tmp_path / "Chest_x-ray"
    for i, m in enumerate(masks):
        root.mkdir(exist_ok=True)
        Image.fromarray(smooth_image(i, SIZE)).save(root / f"{i + 1}-10-500.jpg", quality=90)
        save(root / f"{i + 1}-10-500@.png", m)
    return root, masks


def test_at_suffix_masks_beside_images_are_a_layout(edges_set):
    root, masks = edges_set
    assert mask_stem(Path("1-10-500-500-100@.png")) == ("1-10-500-500-100", 0)
    ds = discover(root)
    assert ds.layout == "class_masks" and ds.problems == [] and ds.classes == []
    assert len(ds.samples) == len(masks)
    for s in ds.samples:
        assert s.label is None and s.masks == (s.image.with_name(s.image.stem + "@.png"),)


def test_anti_aliased_and_stray_edge_values_are_binary_with_evidence(edges_set):
    root, masks = edges_set
    assert 3 < len(np.unique(masks[0])) <= 32  # few enough values for a label map
    assert edge_share(masks[3]) == 1.0 and edge_share(masks[0]) == 1.0
    s = resolve(Cfg(), discover(root).samples, root)
    off = sum(int(((m != 0) & (m != 255)).sum()) for m in masks[:4])
    share = 100 * off / (4 * SIZE * SIZE)
    assert (s.mode, s.values) == ("binary", ())
    assert (
        s.note
        == f"{NOISY_NOTE} (4 of 6 files hold values between 0 and 255, {share:.2f} % of their pixels)"
    )
    assert 0.5 < share < 5


def test_audit_of_the_edges_set_lists_one_foreground_structure(edges_set):
    root, masks = edges_set
    r = audit(root)
    assert r.layout == "class_masks" and r.n_images == 6
    assert list(r.objects) == ["foreground"] and r.objects["foreground"]["n_objects"] == 6
    assert r.mask_interpretation["description"].startswith(f"binary: {NOISY_NOTE} (4 of 6 files")
    assert r.odd_masks == [] and r.label_table == [] and r.ok, r.problems


def _ring_map(width: int, mid: int = 128) -> np.ndarray:
    """0 background, a 255 core and a ring of ``mid`` ``width`` pixels wide around it."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[_disc(24, 24, 8 + width)] = mid
    m[_disc(24, 24, 8)] = 255
    return m


@pytest.mark.parametrize("width", [1, 2, 4])
def test_label_maps_whose_values_fill_regions_stay_labels(tmp_path, width):
    """0/128/255 with a ring: two pixels wide it touches one side only; one pixel wide
    it would be an edge, so the ring's label comes with regions of it elsewhere."""
    root = tmp_path / "set"
    for i in range(3):
        m = _ring_map(width)
        m[2:10, 2 + i : 12 + i] = 128  # a region of the ring's label on its own
        save(root / "images" / f"c{i}.png", smooth_image(i, SIZE))
        save(root / "masks" / f"c{i}.png", m)
    assert edge_share(m) < 0.9
    s = resolve(Cfg(), discover(root).samples, root)
    assert (s.mode, s.values) == ("labels", (128, 255))
    r = audit(root)
    assert set(r.objects) == {"128", "255"}


def test_label_maps_0_1_2_stay_labels(label_phantoms):
    s = resolve(Cfg(), discover(label_phantoms).samples, label_phantoms)
    assert (s.mode, s.values) == ("labels", (1, 2))
