"""The grey views duplicate verification compares, and the similarities it reads off them.

A :class:`View` is an image reduced once (grey, longest side <= 256 px) with the arrays
derived from it computed on first use and kept (ORB keypoints, band-pass, noise residual,
edges, 32x32 thumbnail), since one view takes part in several candidate pairs. The
similarities: :func:`_tiles` (median NCC over 16x16 tiles of two band-passed views, robust to
the shared outlines of a standard pose), :func:`_coarse` (thumbnails' NCC, the cheap gate)
and the parts of the noise test (:func:`_fine`, :func:`_noise_parts`). How a pair is aligned
and judged: :mod:`medtl.data.duplicates.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from medtl.data.duplicates.hashes import grey_view

MIN_SIDE = 32
"""Images with a shorter side (px) are linked only as exact copies."""

_TILE = 16  # px of the view per tile of the similarity
_CONSTANT_GRAD = 0.5  # blurred gradient magnitude (grey levels/px) of a constant region
_BLUR = 1.0  # Gaussian sigma (px of the view): the NCC reads the band between it and 4x it


@dataclass
class View:
    """One image reduced for verification: grey float view, its original size, keypoints."""

    grey: np.ndarray  # uint8 (h, w), longest side <= 256
    shape: tuple[int, int]  # original (H, W)
    informative: bool  # has content: not constant, not one colour but a border
    _features: tuple | None = field(default=None, repr=False)
    _band: np.ndarray | None = field(default=None, repr=False)
    _noise: tuple | None = field(default=None, repr=False)
    _edges: np.ndarray | None = field(default=None, repr=False)
    _coarse: np.ndarray | None = field(default=None, repr=False)

    def features(self) -> tuple:
        """ORB ``(keypoint positions (n, 2) float32, descriptors or None)`` of the view
        (computed once; plain arrays, so a worker process can hand them back)."""
        if self._features is None:
            orb = cv2.ORB_create(nfeatures=300, edgeThreshold=15, patchSize=15, fastThreshold=10)
            u8 = cv2.normalize(self.grey, None, 0, 255, cv2.NORM_MINMAX)
            kp, desc = orb.detectAndCompute(u8, None)
            self._features = (np.float32([k.pt for k in kp]).reshape(-1, 2), desc)
        return self._features

    def band(self) -> np.ndarray:
        """The band-passed view (:func:`_blur`, computed once)."""
        if self._band is None:
            self._band = _blur(self.grey)
        return self._band

    def noise(self) -> tuple[np.ndarray, np.ndarray]:
        """The view's fine residual and gradient magnitude (:func:`_noise_parts`, computed
        once: a view takes part in several pairs)."""
        if self._noise is None:
            self._noise = _noise_parts(self.grey)
        return self._noise

    def edges(self) -> np.ndarray:
        """The band-passed gradient magnitude of the view (:func:`_edges`, computed once)."""
        if self._edges is None:
            self._edges = _edges(self.grey)
        return self._edges

    def coarse(self) -> np.ndarray:
        """The view's 32x32 thumbnail (:func:`_thumb32`, computed once)."""
        if self._coarse is None:
            self._coarse = _thumb32(self.grey)
        return self._coarse

    @property
    def tiny(self) -> bool:
        """Shorter side under :data:`MIN_SIDE` px: linked only as an exact copy."""
        return min(self.shape) < MIN_SIDE


def view_of(rgb: np.ndarray, grey: np.ndarray | None = None) -> View:
    """The :class:`View` of a decoded image (``(H, W)`` or ``(H, W, C)``); ``grey``: its
    :func:`~medtl.data.duplicates.hashes.grey_view` when the caller has it."""
    g = grey_view(rgb) if grey is None else grey
    return View(g, tuple(np.asarray(rgb).shape[:2]), _informative(g))


def _informative(a: np.ndarray) -> bool:
    """Whether an image has content to compare: its inner 80 % is not flat."""
    h, w = a.shape
    inner = a[h // 10 : h - h // 10, w // 10 : w - w // 10]
    return inner.size > 0 and float(inner.std()) >= 2.0 and float(np.ptp(inner)) >= 8


def _ncc(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    if valid is not None:
        a, b = a[valid], b[valid]
    if a.size < 16:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-6 else 0.0


def _tiles(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Median NCC over the 16x16 tiles the two band-passed views share (global NCC when
    fewer than 4 tiles): outlines a data set's images share in the standard pose fill few
    tiles, the texture inside fills most, so only one acquisition scores high."""
    if (a.shape[0] // _TILE) * (a.shape[1] // _TILE) < 4:
        return _ncc(a, b, valid)
    ta, tb = _cut(a, _TILE).astype(np.float32), _cut(b, _TILE).astype(np.float32)
    keep = np.ones(len(ta), bool) if valid is None else _cut(valid, _TILE).all(axis=1)
    ta, tb = ta[keep], tb[keep]
    if len(ta) < 4:
        return _ncc(a, b, valid)
    ta = ta - ta.mean(axis=1, keepdims=True)
    tb = tb - tb.mean(axis=1, keepdims=True)
    den = np.sqrt((ta * ta).sum(axis=1) * (tb * tb).sum(axis=1))
    return float(
        np.median(np.where(den > 1e-6, (ta * tb).sum(axis=1) / np.maximum(den, 1e-6), 0.0))
    )


def _cut(x: np.ndarray, t: int) -> np.ndarray:
    """The whole ``t`` x ``t`` tiles of ``x`` as rows ``(tiles, t * t)``."""
    h, w = (x.shape[0] // t) * t, (x.shape[1] // t) * t
    return x[:h, :w].reshape(h // t, t, w // t, t).swapaxes(1, 2).reshape(-1, t * t)


Pair = tuple
"""``(view, the other view aligned onto it, valid mask or None)``: what a similarity compared."""


def _fine(x: np.ndarray) -> np.ndarray:
    """A uint8 view minus its 3x3 median: the noise (the median keeps edges)."""
    return x.astype(np.float32) - cv2.medianBlur(x, 3)


def _noise_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fine residual, gradient magnitude)`` of a uint8 view: :func:`_fine`, and the Sobel
    magnitude after a Gaussian blur (sigma 1.5) that tells flat pixels from edges."""
    s = cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5)
    return _fine(x), np.hypot(cv2.Sobel(s, cv2.CV_32F, 1, 0), cv2.Sobel(s, cv2.CV_32F, 0, 1))


def _blur(a: np.ndarray) -> np.ndarray:
    """Band-pass (difference of Gaussians): the detail one acquisition keeps through
    re-encoding and resizing and another patient's image does not share."""
    a = a.astype(np.float32)
    return cv2.GaussianBlur(a, (0, 0), _BLUR) - cv2.GaussianBlur(a, (0, 0), 4 * _BLUR)


def _edges(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3)
    return _blur(np.sqrt(gx * gx + gy * gy))


def _thumb32(x: np.ndarray) -> np.ndarray:
    return cv2.resize(x.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


_COMPUTE = {"band": _blur, "noise": _noise_parts, "edges": _edges, "coarse": _thumb32}
"""How each derived array of a view is computed (:meth:`View.band` and its siblings)."""


def _coarse(a: View, b: np.ndarray, *views: View) -> float:
    """NCC of 32x32 thumbnails of ``a`` and ``b`` (one of ``views``' grey, or an aligned
    array): the cheap gate before keypoint matching."""
    return _ncc(a.coarse(), _derived(b, "coarse", *views))


def _owner(x: np.ndarray, *views: View) -> View | None:
    """The view whose own grey ``x`` is (None for an aligned or resized array)."""
    return next((v for v in views if x is v.grey), None)


def _derived(x: np.ndarray, name: str, *views: View) -> Any:
    """``name`` (``band``, ``noise``, ``edges`` or ``coarse``) of the array ``x``: the view's
    own, computed once, when ``x`` is one of ``views``' grey, else computed for ``x``."""
    v = _owner(x, *views)
    return getattr(v, name)() if v is not None else _COMPUTE[name](x)


def _onto(src: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(src, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
