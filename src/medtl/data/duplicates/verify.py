"""Stage two of duplicate finding: is a candidate pair one acquisition, one patient, or neither?

Hashes only propose pairs; the pixels decide. Each image is reduced to a grey *view*
(longest side <= 256 px, :func:`view_of`), and the second image of a pair is aligned onto
the first in up to three ways, keeping the best:

- **identity**: the other view resized onto this one (re-encoded, resized,
  brightness-shifted or annotated copies; pixel-registered slices);
- **window**: the hash stage's best window (a crop of 5-25 %) cut out and resized;
- **features**: ORB keypoints matched with a ratio test, a similarity transform fitted
  with RANSAC (at least :data:`MIN_INLIERS` inliers), the other view warped onto this one;
- **refined**: only for a pair that none of those makes one acquisition, the best of them
  refined to sub-pixel precision by ECC (OpenCV's ``findTransformECC``, an affine map):
  a rotated copy keeps its noise only when the alignment is exact, which a resize, a crop
  window or 3 px of RANSAC tolerance are not.

The similarity is the median, over 16x16 tiles of the overlap, of the normalised
cross-correlation (NCC) of the two aligned views band-passed between 1 and 4 px
(invariant to brightness and contrast; the band skips JPEG blocks and resampling noise).
A pair is the **same image** when it reaches :data:`IDENTITY_NCC` as it is,
:data:`STILL_NCC` after a keypoint alignment within 2 px of plain resizing, or
:data:`SAME_IMAGE_NCC` after a crop or a keypoint alignment that moves the image more and
overlaps at least half of the smaller image: texture (speckle, vessels,
trabeculae) survives re-encoding but not another patient, whose standard pose shares the
outlines only, and outlines fill few tiles. It must also share its noise
(:func:`_residual` >= :data:`RESIDUAL_NCC`): a re-encoded or resized copy keeps its
acquisition's noise, a second acquisition of one pose (small pictures of one template
above all, whose outlines fill every tile) has its own. Pixel-registered images of one
size (at least :data:`PATIENT_MIN_SIDE` px) that fall short of that but whose edges
coincide (gradient magnitudes, tile-median NCC >= :data:`SAME_PATIENT_EDGE_NCC`) are
**likely the same patient**: neighbouring slices of a volume, or registered sequences of
one slice. Everything else is unrelated. Images without content (constant, one colour but
a border, under :data:`MIN_SIDE` px) are never linked: any two such images correlate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from medtl.data.duplicates.hashes import WINDOWS
from medtl.data.duplicates.views import (  # noqa: F401  (View, view_of, MIN_SIDE: re-exported)
    _CONSTANT_GRAD,
    MIN_SIDE,
    Pair,
    View,
    _blur,
    _coarse,
    _cut,
    _derived,
    _fine,
    _onto,
    _owner,
    _tiles,
    view_of,
)

SAME_IMAGE_NCC = 0.8
"""Least similarity of views aligned by a crop window or keypoints for one acquisition..."""
IDENTITY_NCC = 0.95
"""... and of views compared as they are (resized only): re-encoded, resized, brightened
or annotated copies reach 0.98-1.0 on BUSI (5th percentile), two patients of one template
shape in the tests' fixtures 0.87."""
SAME_PATIENT_EDGE_NCC = 0.94
"""Least tile-median gradient-magnitude NCC of pixel-registered views for the same patient
(registered sequences of one phantom slice: 0.95-1.0; slices of synthetic volumes of
one shape, one per patient: <= 0.905)."""
COARSE_GATE = 0.75
"""Keypoints are matched only for pairs whose 32x32 thumbnails correlate this much..."""
CROP_GATE = 0.45
"""... or, for a crop candidate, whose best window correlates this much."""
MIN_INLIERS = 12
"""Least RANSAC inliers of the keypoint alignment."""
ORB_MIN_SIDE = 48
"""Views with a shorter side (px) are not aligned by keypoints."""
PATIENT_MIN_SIDE = 64
"""Images with a shorter side (px) are never called the same patient: at 32 px, pictures of
one template whose shapes moved by under a pixel have coinciding edges (16 of 780 such
pairs reached :data:`SAME_PATIENT_EDGE_NCC`)."""
MIN_OVERLAP = 0.5
"""Least share of the smaller image the alignment must overlap."""
STILL_NCC = 0.9
"""Least similarity when keypoints align the views within 2 px of plain resizing."""
RESIDUAL_NCC = 0.25
"""Least noise similarity (:func:`_residual`) of a pair called one acquisition. Measured
(15 edited copies per edit and data set): re-encoded, resized, rotated or brightened
copies of BUSI and chest X-ray images 0.32 at least (rotations; JPEG q 50: 0.39);
pictures of one template moved by under 1.3 px, each with its own noise, 0.16 at most
(the 45 and 137 of 780 pairs at 32 and 64 px whose outlines pass the similarity). Neighbouring frames of one ultrasound sweep share
speckle and fall on both sides (0.18-0.49 among BUSI's)."""
REFINE_FROM = 0.4
"""Least similarity of the best alignment for a pair to be refined (:func:`_refine`;
the refined alignment must then reach :data:`STILL_NCC` and the noise test)..."""
WINDOW_REFINE = 0.93
"""... or least coarse NCC of the hash stage's crop window, refined from that window when
another alignment came out best: a window 3 px off its crop has a band-pass similarity
near 0 (DRIVE crops: -0.03 and 0.20, thumbnails 0.93 and 0.98; refined, 0.98). Among the
275 chest X-rays of distinct patients 75 of the 3,001 candidate pairs reach it."""
_NEEDED = {
    "identity": IDENTITY_NCC,
    "window": SAME_IMAGE_NCC,
    "features": SAME_IMAGE_NCC,
    "features-still": STILL_NCC,
    "refined": STILL_NCC,
}


@dataclass(frozen=True)
class Verdict:
    """What verification says about one pair: ``relation`` is ``"same"`` (one acquisition),
    ``"patient"`` (likely the same patient) or ``""`` (unrelated); ``similarity`` the NCC of
    the best alignment, ``method`` which alignment gave it, ``edge_similarity`` the edges'
    NCC (registered pairs), ``noise`` the noise similarity (:func:`_residual`; 0.0 when the
    alignment fell short before it was read)."""

    relation: str
    similarity: float
    method: str
    edge_similarity: float = 0.0
    noise: float = 0.0


def _residual(a: View, b: View, pair: Pair) -> float:
    """Noise similarity of an aligned pair: the median over 8x8 tiles of the NCC of the fine
    residuals (:func:`_noise_parts`), read on the flatter half of the first image's
    non-constant pixels (away from edges, which two acquisitions of one pose share; a black
    background around an MRI slice would otherwise be the flatter half) and only on tiles where
    both residuals have some noise (std >= 0.5 grey levels). 1.0 when fewer than 4 tiles do
    (clean, flat or saturated images: nothing to tell acquisitions apart by). The views'
    own parts are reused when the pair holds them unchanged."""
    pa, pb, valid = pair
    ra, grad = _derived(pa, "noise", a, b)
    owner = _owner(pb, a, b)
    rb = owner.noise()[0] if owner is not None else _fine(pb)  # only the residual is read
    ok = np.zeros(pa.shape, bool)
    ok[2:-2, 2:-2] = True  # the blurs' borders
    if valid is not None:
        ok &= valid
    if ok.sum() < 64:
        return 1.0
    varied = ok & (grad > _CONSTANT_GRAD)  # a black background is flat but has no noise
    if varied.sum() < 64:
        return 1.0
    flat = ok & (grad <= np.median(grad[varied]))
    m = _cut(flat, 8)
    n = m.sum(axis=1)
    use = n >= 16  # at least a quarter of the tile is flat
    m, n = m[use], n[use][:, None]
    ta, tb = (
        np.where(m, x - (x * m).sum(1, keepdims=True) / n, 0.0)
        for x in (_cut(ra, 8)[use], _cut(rb, 8)[use])
    )
    va, vb = (ta * ta).sum(1), (tb * tb).sum(1)
    noisy = (va >= 0.25 * n[:, 0]) & (vb >= 0.25 * n[:, 0])
    if noisy.sum() < 4:
        return 1.0
    return float(np.median((ta * tb).sum(1)[noisy] / np.sqrt(va * vb)[noisy]))


def _identity(a: View, b: View) -> tuple[float, float, np.ndarray | None, Pair | None]:
    """``(ncc, coarse ncc, b resized onto a, the compared pair)``, compared at the coarser
    resolution."""
    ra, rb = a.shape[0] / a.shape[1], b.shape[0] / b.shape[1]
    if abs(np.log(ra / rb)) > 0.05:
        return 0.0, 0.0, None, None
    warped = b.grey if a.grey.shape == b.grey.shape else _onto(b.grey, a.grey.shape)
    if a.grey.size > b.grey.size:
        pair = (_onto(a.grey, b.grey.shape), b.grey, None)
        fine = _tiles(_blur(pair[0]), b.band())
    else:
        pair = (a.grey, warped, None)
        fine = _tiles(a.band(), _derived(warped, "band", b))
    return fine, _coarse(a, warped, b), warped, pair


def _box(v: View, window: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` px of window ``window`` of ``v``'s grey view."""
    y0, y1, x0, x1 = WINDOWS[window]
    h, w = v.grey.shape
    return round(y0 * h), round(y1 * h), round(x0 * w), round(x1 * w)


def _window_map(a: View, b: View, window: int, a_in_b: bool) -> np.ndarray:
    """The affine map (2x3) of ``b``'s view onto ``a``'s that window ``window`` stands for
    (of ``b`` when ``a_in_b``: ``a`` a crop of ``b``; else of ``a``)."""
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    if a_in_b:
        t, bo, le, r = _box(b, window)
        sx, sy = wa / max(r - le, 1), ha / max(bo - t, 1)
        return np.array([[sx, 0, -le * sx], [0, sy, -t * sy]])
    t, bo, le, r = _box(a, window)
    return np.array([[(r - le) / wb, 0, le], [0, (bo - t) / hb, t]])


def _window(a: View, b: View, window: int) -> tuple[float, float, Pair | None]:
    """``(ncc, coarse ncc, pair)`` of ``a`` and window ``window`` of ``b`` (``a`` a crop of ``b``)."""
    t, bo, le, r = _box(b, window)
    crop = b.grey[t:bo, le:r]
    if min(crop.shape) < 8:
        return 0.0, 0.0, None
    crop = _onto(crop, a.grey.shape)
    return _tiles(a.band(), _blur(crop)), _coarse(a, crop), (a.grey, crop, None)


def _warp(a: View, b: View, m: np.ndarray, flags: int) -> Pair | None:
    """``b``'s view warped onto ``a``'s by the affine map ``m`` (``flags``: interpolation,
    and ``cv2.WARP_INVERSE_MAP`` when ``m`` maps ``a`` onto ``b``) as a pair with the valid
    overlap; None when the overlap is under :data:`MIN_OVERLAP` of the smaller image."""
    h, w = a.grey.shape
    inverse = flags & cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(b.grey, m, (w, h), flags=flags)
    valid = cv2.warpAffine(np.ones_like(b.grey), m, (w, h), flags=cv2.INTER_NEAREST | inverse) > 0.5
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    area = abs(float(np.linalg.det(m[:, :2])))  # b's px per a's px when inverse
    smaller = min(a.grey.size, b.grey.size / area if inverse else b.grey.size * area)
    if valid.sum() < MIN_OVERLAP * smaller:
        return None
    return a.grey, warped, valid


def _features(a: View, b: View) -> tuple[float, bool, Pair | None, np.ndarray | None]:
    """Similarity after a RANSAC similarity transform fitted to ORB matches of ``b`` onto
    ``a`` (0 if none), whether that transform barely moves the image (2 px), the pair and
    the transform."""
    if min(a.grey.shape) < ORB_MIN_SIDE or min(b.grey.shape) < ORB_MIN_SIDE:
        return 0.0, False, None, None
    (ka, da), (kb, db) = a.features(), b.features()
    if da is None or db is None or len(ka) < MIN_INLIERS or len(kb) < MIN_INLIERS:
        return 0.0, False, None, None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < MIN_INLIERS:
        return 0.0, False, None, None
    src = kb[[m.queryIdx for m in good]]
    dst = ka[[m.trainIdx for m in good]]
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if m is None or int(inliers.sum()) < MIN_INLIERS:
        return 0.0, False, None, None
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if not 0.25 <= scale <= 4.0:
        return 0.0, False, None, None
    pair = _warp(a, b, m, cv2.INTER_AREA)
    if pair is None:
        return 0.0, False, None, None
    score = _tiles(a.band(), _blur(pair[1]), pair[2])
    return score, _moves_little(m, a.grey.shape, b.grey.shape), pair, m


def _refine(a: View, b: View, m: np.ndarray) -> tuple[float, Pair | None]:
    """``(similarity, pair)`` after refining the map ``m`` of ``b``'s view onto ``a``'s by
    ECC (``cv2.findTransformECC``, affine, 50 iterations): a sub-pixel alignment, which
    the noise test of a rotated or re-cropped copy needs. ``(0, None)`` when it does not
    converge, squashes or stretches the image (singular values outside 1/4..4 or more than
    1.25 apart) or overlaps too little."""
    if min(a.grey.shape) < ORB_MIN_SIDE or min(b.grey.shape) < ORB_MIN_SIDE:
        return 0.0, None
    warp = cv2.invertAffineTransform(m.astype(np.float64)).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            a.grey.astype(np.float32),
            b.grey.astype(np.float32),
            warp,
            cv2.MOTION_AFFINE,
            criteria,
            None,
            3,
        )
    except cv2.error:  # not converged, or a singular correlation
        return 0.0, None
    s = np.linalg.svd(warp[:, :2], compute_uv=False)
    if not (0.25 <= s[1] and s[0] <= 4.0 and s[0] <= 1.25 * s[1]):
        return 0.0, None
    pair = _warp(a, b, warp, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    if pair is None:
        return 0.0, None
    return _tiles(a.band(), _blur(pair[1]), pair[2]), pair


def _moves_little(m: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the fitted transform is within 2 px everywhere of plain resizing ``b`` onto ``a``."""
    resize = np.array([[a[1] / b[1], 0, 0], [0, a[0] / b[0], 0]])
    corners = np.array([[0, 0, 1], [b[1], 0, 1], [0, b[0], 1], [b[1], b[0], 1]], dtype=float)
    return float(np.abs(corners @ (m - resize).T).max()) <= 2.0


def verify(a: View, b: View, window: int | None = None, a_in_b: bool = True) -> Verdict:
    """The :class:`Verdict` on ``a`` and ``b``. ``window``: the hash stage's best window
    (of ``b`` when ``a_in_b``, else of ``a``), tried as a crop alignment."""
    if not (a.informative and b.informative) or a.tiny or b.tiny:
        return Verdict("", 0.0, "no content")
    best, coarse, warped, pair = _identity(a, b)
    method = "identity"
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    start = np.array([[wa / wb, 0, 0], [0, ha / hb, 0]])  # the best alignment's map b -> a
    window_coarse = 0.0
    if best < IDENTITY_NCC and window:
        ncc, window_coarse, p = _window(a, b, window) if a_in_b else _window(b, a, window)
        if ncc > best:
            best, method, pair = ncc, "window", p
            start = _window_map(a, b, window, a_in_b)
        coarse = max(coarse, window_coarse)
    gate = CROP_GATE if window else COARSE_GATE
    matched = best < IDENTITY_NCC and coarse >= gate
    if matched:
        ncc, still, p, m = _features(a, b)
        if ncc > best:
            best, method, pair, start = ncc, "features-still" if still else "features", p, m
    noise = round(_residual(a, b, pair), 4) if best >= _NEEDED[method] else 0.0
    if noise >= RESIDUAL_NCC:
        return Verdict("same", round(best, 4), method, noise=noise)
    starts = []  # maps of b onto a to refine, the likeliest first
    if best >= REFINE_FROM:
        if not matched:  # alike as they are but not sharing noise: perhaps turned a little
            m = _features(a, b)[3]
            start = start if m is None else m
        starts.append(start)
    if window_coarse >= WINDOW_REFINE and method != "window":  # a few px off, or keypoints astray
        starts.append(_window_map(a, b, window, a_in_b))
    for m in starts:
        ncc, p = _refine(a, b, m)
        if ncc >= _NEEDED["refined"]:
            n = round(_residual(a, b, p), 4)
            if n >= RESIDUAL_NCC:
                return Verdict("same", round(ncc, 4), "refined", noise=n)
    if warped is not None and a.shape == b.shape and min(a.shape) >= PATIENT_MIN_SIDE:
        edge = _tiles(a.edges(), _derived(warped, "edges", b))
        if edge >= SAME_PATIENT_EDGE_NCC:
            return Verdict("patient", round(best, 4), "identity", round(edge, 4), noise)
        return Verdict("", round(best, 4), method, round(edge, 4), noise)
    return Verdict("", round(best, 4), method, noise=noise)
