"""Tests for medtl.data.dedup: hashes, near pairs, duplicate groups, group assignment."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from medtl.data.dedup import (
    NEAR_DUP_MAX_DISTANCE,
    assign_groups,
    duplicate_groups,
    image_hashes,
    near_pairs,
    phash,
)
from medtl.data.layouts import Sample
from tests.data.conftest import near_copy, save, smooth_image


def test_phash_is_robust_to_resize_brightness_and_separates_unrelated() -> None:
    a = smooth_image(1)
    bigger = np.asarray(Image.fromarray(a).resize((80, 80), Image.Resampling.BILINEAR))
    assert bin(phash(a) ^ phash(bigger)).count("1") <= NEAR_DUP_MAX_DISTANCE
    assert bin(phash(a) ^ phash(near_copy(a))).count("1") <= NEAR_DUP_MAX_DISTANCE
    assert bin(phash(a) ^ phash(a.T)).count("1") > NEAR_DUP_MAX_DISTANCE
    hashes = [phash(smooth_image(s)) for s in range(40)]
    assert len(near_pairs(hashes)) == 0  # 780 unrelated pairs, none near
    assert 0 <= phash(a) < 2**64
    assert bin(phash(a)).count("1") == 32  # half of the 64 coefficients above the median


def test_image_hashes_exact_hash_ignores_file_format(tmp_path: Path) -> None:
    a = smooth_image(1)
    p1, p2 = save(tmp_path / "a.png", a), save(tmp_path / "a.bmp", a)
    p3 = save(tmp_path / "b.png", near_copy(a))
    (h1, q1), (h2, q2), (h3, q3) = image_hashes([Sample(p1), Sample(p2), Sample(p3)])
    assert h1 == h2 and q1 == q2
    assert h3 != h1
    assert len(h1) == 40  # sha1 hex


def _fake(n: int) -> list[Sample]:
    return [Sample(Path(f"img{i}.png")) for i in range(n)]


# a time limit 50x what it takes alone (0.02 s), so it holds beside the other xdist worker
def test_duplicate_groups_union_find_and_speed() -> None:
    rng = np.random.default_rng(0)
    n = 800
    ph = [int(x) for x in rng.integers(0, 2**63, n, dtype=np.int64)]
    ph[10] = ph[3] ^ 0b1011  # 3 bits from 3: near
    ph[500] = ph[10] ^ (1 << 40)  # 1 bit from 10, 4 from 3: chains into the same group
    hashes = [(f"sha{i}", p) for i, p in enumerate(ph)]
    hashes[700] = ("sha42", ph[700])  # exact copy of 42, pHash unrelated on purpose
    samples = _fake(n)
    t0 = time.perf_counter()
    groups = duplicate_groups(samples, hashes=hashes)
    assert time.perf_counter() - t0 < 1.0
    assert groups == [[3, 10, 500], [42, 700]]
    assert duplicate_groups(samples, near=False, hashes=hashes) == [[42, 700]]
    assert duplicate_groups(samples, max_distance=1, hashes=hashes) == [[10, 500], [42, 700]]


def test_assign_groups_unions_duplicates_with_user_groups(tmp_path: Path) -> None:
    a, c, e = smooth_image(1), smooth_image(3), smooth_image(5)
    paths = [
        save(tmp_path / "s0.png", a),
        save(tmp_path / "s1.png", a),  # exact copy of s0
        save(tmp_path / "s2.png", near_copy(c)),
        save(tmp_path / "s3.png", c),  # near copy of s2
        save(tmp_path / "s4.png", smooth_image(4)),
        save(tmp_path / "s5.png", e),
        save(tmp_path / "s6.png", e),  # exact copy of s5, other patient
        save(tmp_path / "s7.png", smooth_image(7)),
    ]
    user = [None, "p2", None, None, "p1", "p1", "p3", None]
    samples = [Sample(p, group=g, label="x") for p, g in zip(paths, user, strict=True)]
    out = assign_groups(samples)
    groups = [s.group for s in out]
    assert groups[0] == groups[1] == "p2"  # the copy joins the patient of its twin
    assert groups[2] == groups[3] and groups[2].startswith("dup-")
    assert groups[4] == groups[5] == groups[6] == "p1+p3"  # tied by either notion
    assert groups[7] is None
    assert [s.image for s in out] == paths and all(s.label == "x" for s in out)
    assert samples[0].group is None  # inputs untouched (frozen dataclass, replaced)
    exact_only = [s.group for s in assign_groups(samples, near=False)]
    assert exact_only[2] is None and exact_only[3] is None


def test_phash_of_a_large_image_reads_its_box_average() -> None:
    """Large uint8 images are box-averaged (factor shorter side // 128) before the LANCZOS:
    the hash equals that of the reduced image, stays near the full-size float path, and
    images under 256 px are hashed unreduced."""
    big = np.asarray(Image.fromarray(smooth_image(3)).resize((640, 520), Image.Resampling.BICUBIC))
    reduced = np.asarray(Image.fromarray(big).reduce(4))  # 520 // 128
    assert phash(big) == phash(reduced.astype(np.float32))  # floats are never reduced
    assert bin(phash(big) ^ phash(big.astype(np.float32))).count("1") <= NEAR_DUP_MAX_DISTANCE
    small = big[:255, :300]
    assert phash(small) == phash(small.astype(np.float32))
