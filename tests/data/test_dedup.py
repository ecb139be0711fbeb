"""Tests for medtl.data.duplicates: hashes, candidates, verification, groups, the guard."""

from __future__ import annotations

import io as _io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from medtl.data.dedup import assign_groups, duplicate_groups, find_links, image_hashes, phash
from medtl.data.duplicates.candidates import WINDOW_DISTANCE, candidate_pairs
from medtl.data.duplicates.hashes import hashes_of, near_pairs, window_hashes
from medtl.data.duplicates.links import MAX_GROUP, Link, oversized, warn_oversized
from medtl.data.duplicates.verify import RESIDUAL_NCC, verify, view_of
from medtl.data.layouts import Sample
from medtl.data.leaks import leak_relations
from tests.data.conftest import near_copy, save, smooth_image

BUSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "busi" / "Dataset_BUSI_with_GT"


def _bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def anatomy(seed: int, size: int = 128, template: int = 0) -> np.ndarray:
    """A 'patient': a shared template shape (head-like ellipses) deformed per ``seed``,
    with the patient's own texture; no acquisition noise yet."""
    rng = np.random.default_rng(1000 + seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    t = np.random.default_rng(template)
    shape = 120 * ((x / 0.42) ** 2 + (y / 0.36) ** 2 < 1) + 60 * (
        (x / 0.2) ** 2 + (y / 0.3) ** 2 < 1
    )
    shape = shape + 40 * (((x - 0.1 * t.uniform()) / 0.06) ** 2 + (y / 0.12) ** 2 < 1)
    tex = cv2.GaussianBlur(rng.normal(0, 60, (size, size)), (0, 0), 1.5)
    return shape + tex + 20


def scan(body: np.ndarray, seed: int, shift: int = 0, bend: float = 0.0) -> np.ndarray:
    """One acquisition of ``body`` with its own noise; another pose moves it by ``shift``
    px and bends it smoothly by up to ``bend`` px (tissue lies differently)."""
    h, w = body.shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype(np.float32)
    dy, dx = (cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 12) for _ in range(2))
    scale = bend / max(np.abs(dx).max(), np.abs(dy).max(), 1e-9)
    mx, my = x + shift + (dx * scale).astype(np.float32), y + (dy * scale).astype(np.float32)
    posed = cv2.remap(
        body.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    noise = np.random.default_rng(seed).normal(0, 6, body.shape)
    return np.clip(posed + noise, 0, 255).astype(np.uint8)


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = _io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf))


def _annotated(a: np.ndarray) -> np.ndarray:
    im = Image.fromarray(a.copy())
    d = ImageDraw.Draw(im)
    d.line([(30, 40), (50, 40)], fill=255)
    d.line([(40, 30), (40, 50)], fill=255)
    d.text((4, 4), "LT 12:00", fill=255)
    return np.asarray(im)


def test_phash_is_robust_to_resize_brightness_and_separates_unrelated() -> None:
    a = smooth_image(1)
    bigger = np.asarray(Image.fromarray(a).resize((80, 80), Image.Resampling.BILINEAR))
    assert _bits(phash(a), phash(bigger)) <= 4
    assert _bits(phash(a), phash(near_copy(a))) <= 4
    assert _bits(phash(a), phash(a.T)) > 4
    assert len(near_pairs([phash(smooth_image(s)) for s in range(40)], 4)) == 0
    assert bin(phash(a)).count("1") == 32  # half of the 64 coefficients above the median


def test_window_hashes_put_a_crop_near_a_window_of_its_original() -> None:
    a = scan(anatomy(1, 160), 0)
    crop = a[12:148, 12:148]  # 15 % off each side's length: one of the windows
    wa, wc = window_hashes(a), window_hashes(crop)
    assert len(wa) == 126 and wa[0] != wa[1]
    assert min(_bits(wc[0], w) for w in wa[1:]) <= WINDOW_DISTANCE
    assert _bits(phash(a), phash(crop)) > 12  # the full-frame pHash alone misses it


def test_image_hashes_exact_hash_ignores_file_format(tmp_path: Path) -> None:
    a = smooth_image(1)
    p1, p2 = save(tmp_path / "a.png", a), save(tmp_path / "a.bmp", a)
    p3 = save(tmp_path / "b.png", near_copy(a))
    h1, h2, h3 = image_hashes([Sample(p1), Sample(p2), Sample(p3)])
    assert h1 == h2 and h3[0] != h1[0] and len(h1[0]) == 40


def test_candidates_exact_star_and_phash_neighbours() -> None:
    imgs = [smooth_image(s, 64) for s in range(6)]
    hashes = [hashes_of(a) for a in imgs + [imgs[0], imgs[0], near_copy(imgs[3])]]
    pairs = {(c.i, c.j): c.exact for c in candidate_pairs(hashes)}
    assert pairs[(0, 6)] and pairs[(0, 7)] and (6, 7) not in pairs  # a star, not a clique
    assert pairs[(3, 8)] is False


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: _jpeg(a, 50),
        lambda a: np.asarray(Image.fromarray(a).resize((96, 96), Image.Resampling.BILINEAR)),
        lambda a: np.clip(a * 1.2 - 20, 0, 255).astype(np.uint8),
        _annotated,
        lambda a: a[10:118, 14:122],  # 15 % crop
        lambda a: cv2.warpAffine(a, cv2.getRotationMatrix2D((64, 64), 4, 1.0), (128, 128)),
    ],
    ids=["jpeg50", "resize", "brightness", "annotated", "crop", "rotated"],
)
def test_an_edited_copy_is_the_same_image(edit) -> None:
    a = scan(anatomy(2), 0)
    v = verify(view_of(a), view_of(edit(a)))
    assert v.relation == "same" and v.similarity >= 0.7


def test_different_patients_same_pose_and_one_patient_in_two_poses() -> None:
    """Patients of one template shape in the standard pose are never linked; one patient
    scanned twice (new noise, moved and bent) is not called the same image."""
    scans = [scan(anatomy(p), 10 + p) for p in range(8)]
    views = [view_of(s) for s in scans]
    for i in range(8):
        for j in range(i + 1, 8):
            assert verify(views[i], views[j]).relation == ""
    again = scan(anatomy(3), 99, shift=5, bend=6)
    assert verify(views[3], view_of(again)).relation != "same"


def test_bad_inputs_are_never_linked(tmp_path: Path) -> None:
    """Tiny, constant and one-colour-with-a-border images: no link, not even between
    exact copies (any two such images correlate), and no crash."""
    tiny = smooth_image(1, 20)
    flat = np.full((64, 64), 7, np.uint8)
    border = np.pad(np.full((56, 56), 200, np.uint8), 4)
    border2 = np.pad(np.full((56, 56), 90, np.uint8), 4)
    arrays = [tiny, near_copy(tiny), flat, flat.copy(), border, border2, np.zeros((1, 1), np.uint8)]
    paths = [save(tmp_path / f"{k}.png", a) for k, a in enumerate(arrays)]
    samples = [Sample(p) for p in paths]
    links = find_links(samples, image_hashes(samples))
    assert [(x.i, x.j) for x in links] == []
    unread = [Sample(tmp_path / f"view{k}.png") for k in range(len(arrays))]  # the views only
    kept = find_links(unread, [hashes_of(a) for a in arrays], views=[view_of(a) for a in arrays])
    assert kept == []  # the views an audit keeps: the same answer
    copy = save(tmp_path / "tiny_copy.png", tiny)  # an exact copy of a tiny image with content
    both = [Sample(paths[0]), Sample(copy)]
    assert [(x.kind, x.relation) for x in find_links(both, image_hashes(both))] == [
        ("exact", "same")
    ]


def test_groups_join_verified_links_and_patient_ids_come_first(tmp_path: Path) -> None:
    a, c = scan(anatomy(1), 1), scan(anatomy(3), 3)
    arrays = [a, a, _jpeg(c, 70), c, scan(anatomy(4), 4), scan(anatomy(5), 5), scan(anatomy(6), 6)]
    paths = [save(tmp_path / f"s{k}.png", x) for k, x in enumerate(arrays)]
    paths[5] = save(tmp_path / "s5.png", arrays[4])  # exact copy of s4 ...
    user = [None, "p2", None, None, "p1", "p3", None]  # ... filed under another patient
    samples = [Sample(p, group=g, label="x") for p, g in zip(paths, user, strict=True)]
    assert duplicate_groups(samples) == [[0, 1], [2, 3], [4, 5]]
    groups = [s.group for s in assign_groups(samples)]
    assert groups[0] == groups[1] == "p2"  # the copy joins the patient of its twin
    assert groups[2] == groups[3] and groups[2].startswith("dup-")
    assert (groups[4], groups[5], groups[6]) == ("p1", "p3", None)  # ids kept apart


def test_chaining_guard_names_big_groups_and_weakest_links(caplog) -> None:
    n = MAX_GROUP + 3
    links = [Link(k, k + 1, "same", "near", 0.9 - 0.01 * k, "identity") for k in range(n - 1)]
    big = oversized([list(range(n)), [n, n + 1]], links)
    assert [g["size"] for g in big] == [n]
    assert [w["i"] for w in big[0]["weakest"]] == [n - 2, n - 3, n - 4]
    samples = [Sample(Path(f"i{k}.png")) for k in range(n + 2)]
    with caplog.at_level(logging.WARNING, logger="medtl"):
        warn_oversized(big, samples)
    assert f"duplicate group of {n} images" in caplog.text and "i11.png ~ i12.png" in caplog.text


def test_a_big_patient_is_no_duplicate_chain(caplog) -> None:
    """One patient with more images than the chaining bound (a DICOM series, a CSV group
    column) is held together by its id, not by duplicate links: no warning, no crash; the
    same size joined by links across images without ids is warned about."""
    n = MAX_GROUP + 12
    patient = [Sample(Path(f"p{k}.png"), group="P1") for k in range(n)]
    with caplog.at_level(logging.WARNING, logger="medtl"):
        out = assign_groups(patient, hashes=[("h",)] * n, links=[])
    assert {s.group for s in out} == {"P1"} and "duplicate group" not in caplog.text
    loose = [Sample(Path(f"i{k}.png")) for k in range(n)]
    links = [Link(k, k + 1, "same", "near", 0.95, "identity") for k in range(n - 1)]
    with caplog.at_level(logging.WARNING, logger="medtl"):
        assign_groups(loose, hashes=[(f"h{k}",) for k in range(n)], links=links)
    assert f"duplicate group of {n} images" in caplog.text


def test_leak_relations_name_same_image_and_same_patient(tmp_path: Path) -> None:
    body = anatomy(7)
    a = scan(body, 1)
    reg = a.astype(np.float32)
    second = np.clip(255 - reg * 0.8, 0, 255).astype(np.uint8)  # a registered sequence
    arrays = [a, scan(anatomy(8), 2), _jpeg(a, 60), second, scan(anatomy(9), 3)]
    paths = [save(tmp_path / f"l{k}.png", x) for k, x in enumerate(arrays)]
    samples = [Sample(p) for p in paths]
    rel = leak_relations(samples, {"train": [0, 1], "test": [2, 3, 4]}, image_hashes(samples))
    assert rel["test"][2] == "same" and 4 not in rel["test"]


@pytest.mark.busi
@pytest.mark.skipif(not BUSI.is_dir(), reason="BUSI not present at ../shared/data/busi")
def test_busi_cross_class_pair_is_the_same_image() -> None:
    files = [BUSI / "benign" / "benign (433).png", BUSI / "malignant" / "malignant (145).png"]
    files.append(BUSI / "benign" / "benign (1).png")
    samples = [Sample(f) for f in files]
    links = find_links(samples, image_hashes(samples))
    assert [(x.i, x.j, x.relation) for x in links] == [(0, 1, "same")]


@pytest.mark.parametrize("size", [32, 64])
def test_small_pictures_of_one_template_are_not_the_same_image(size: int) -> None:
    """Independent noise tells two acquisitions of one pose apart where the outlines fill
    every tile; a re-encoded or resized copy keeps its acquisition's noise."""
    from tests.data.structures import chest

    views = [view_of(chest(s, size)[0]) for s in range(12)]
    for i in range(12):
        for j in range(i + 1, 12):
            assert verify(views[i], views[j]).relation == "", (i, j)
    a = chest(3, size)[0]
    for copy in (_jpeg(a, 90), np.clip(a * 1.1 + 5, 0, 255).astype(np.uint8)):
        v = verify(view_of(a), view_of(copy))
        assert v.relation == "same" and v.noise >= 0.5, v


def test_one_patient_rescanned_in_one_pose_is_not_the_same_image() -> None:
    """The same body scanned twice without moving (only the noise differs) shares every
    outline and texture: the noise test makes it likely the same patient, not one image."""
    body = anatomy(5)
    first, second = scan(body, 1), scan(body, 2)
    v = verify(view_of(first), view_of(second))
    assert v.relation == "patient" and v.similarity >= 0.95 and v.noise < RESIDUAL_NCC
    assert verify(view_of(first), view_of(_jpeg(first, 60))).relation == "same"


def test_a_crop_resized_back_is_proposed_and_verified() -> None:
    """A 20 % crop scaled back to the original's size: the window hashes propose it among
    look-alikes of one template, verification calls it the same image."""
    others = [scan(anatomy(p), 20 + p) for p in range(10)]
    a = others[4]
    crop = np.asarray(Image.fromarray(a[20:122, 6:108]).resize((128, 128), Image.BILINEAR))
    hashes = [hashes_of(x) for x in others + [crop]]
    found = {(c.i, c.j): c for c in candidate_pairs(hashes)}
    assert (4, 10) in found and found[(4, 10)].window is not None
    c = found[(4, 10)]
    v = verify(view_of(a), view_of(crop), c.window, c.i_in_j)
    assert v.relation == "same" and v.method in ("window", "features")


def test_hashes_from_another_window_grid_propose_no_crops() -> None:
    """Window hashes of another length (a cache written by an older grid) are ignored for
    crops rather than misread; exact and pHash candidates still come."""
    a = smooth_image(2, 64)
    old = [(h[0], h[1], h[2][:28]) for h in (hashes_of(a), hashes_of(a[4:60, 4:60]))]
    assert candidate_pairs(old + [hashes_of(a)]) == candidate_pairs(
        [(h[0], h[1]) for h in old] + [hashes_of(a)]
    )


def test_kept_views_are_verified_without_reading_a_file(tmp_path: Path) -> None:
    """The audit hands the views of its one decode to verification: no file is read again."""
    a = scan(anatomy(2), 0)
    arrays = [a, _jpeg(a, 70), scan(anatomy(3), 1)]
    samples = [Sample(tmp_path / f"missing{k}.png") for k in range(3)]  # never written

    def boom(s: Sample) -> np.ndarray:
        raise AssertionError(f"read {s.image}")

    links = find_links(
        samples, [hashes_of(x) for x in arrays], read=boom, views=[view_of(x) for x in arrays]
    )
    assert [(x.i, x.j, x.relation) for x in links] == [(0, 1, "same")]


def test_audit_of_small_structure_pictures_reports_no_duplicates(tmp_path: Path) -> None:
    """32 px pictures of one template (1 px jitter, own noise): no near-duplicate, no
    'likely the same patient', no crash."""
    from medtl.data.audit.report import audit
    from tests.data.structures import make_structures

    report = audit(make_structures(tmp_path / "d", n=12))
    assert not report.near_duplicates and not report.same_patient and not report.exact_duplicates
    assert not [p for p in report.problems if "duplicate" in p]


def test_pairs_verified_on_forked_workers_match_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification on two forked workers, after this process ran OpenCV's own thread pool
    (which the workers inherit single-threaded): the links of one process, and OpenCV's
    thread count is given back."""
    cv2.setNumThreads(2)
    cv2.GaussianBlur(np.random.default_rng(0).random((512, 512), np.float32), (0, 0), 3)
    arrays = [scan(anatomy(k), k) for k in range(6)]
    arrays += [_jpeg(arrays[0], 70), _annotated(arrays[3]), cv2.resize(arrays[5], (96, 96))]
    hashes, views = [hashes_of(a) for a in arrays], [view_of(a) for a in arrays]
    answers = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("MEDTL_DECODE_THREADS", threads)
        samples = [Sample(tmp_path / f"{threads}-{k}.png") for k in range(len(arrays))]
        links = find_links(samples, hashes, views=views)
        answers[threads] = [(x.i, x.j, x.relation, x.similarity) for x in links]
    assert answers["2"] == answers["1"]
    assert [(i, j) for i, j, _, _ in answers["1"]] == [(0, 6), (3, 7), (5, 8)]
    assert cv2.getNumThreads() == 2
