"""Stage one of duplicate finding: hashes of every image, computed during its one decode.

Each image gets (:func:`hashes_of`):

- an **exact** hash: sha1 of the decoded ``uint8 (H, W, 3)`` pixels and their shape, so a
  byte-identical copy, or the same pixels saved in another format, collide;
- a 64-bit **perceptual** hash of the full frame (the DCT pHash recipe of :func:`phash`:
  grey, 32x32, 2D DCT-II, the 8x8 lowest frequencies compared with their median, read
  from the image's 64x64 thumbnail). Re-encoding, resizing, brightness and annotations
  move it by a few bits; unrelated images sit near 32;
- 126 **window** hashes (:func:`window_hashes`): the same DCT hash of the full frame and
  of sub-windows (5 scales x 5x5 positions) of the thumbnail, so that a crop of 5-25 %
  of an image lies within a few bits of one of its windows (a crop moves the pHash by
  ~20 bits; the nearest of a 3 x 3x3 grid of windows is still ~8 bits away, as near as
  other chest X-rays in the same pose are);
- the full-frame hashes of the thumbnail turned by :data:`ROTATIONS`, so that a copy
  rotated by a few degrees lies near one of them;
- 126 **edge window** hashes: the same windows of the image's local edge energy
  (:func:`edge_view`), which a flat area and a smooth outline leave dark.
  Where every image shares one outline (a fundus camera's round field of view on black)
  the plain windows of other images lie as near to a crop as its original's; the fine
  structure inside (vessels, texture) tells them apart.

The image is converted to grey and reduced once (:func:`grey_view`); verification
compares that same grey view.

Hashes only propose candidate pairs (:mod:`medtl.data.duplicates.candidates`); whether a
pair is a duplicate is decided on the pixels (:mod:`medtl.data.duplicates.verify`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from medtl.data.layouts import Sample
from medtl.data.readers import io
from medtl.utils.parallel import map_ordered

Hashes = tuple
"""``(exact sha1 hex, pHash, signature)`` of one image (:func:`hashes_of`); a 2-tuple, or a
signature of the window hashes alone, is accepted everywhere (crops, then rotations, are
not proposed)."""

_HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
_DCT_SIZE = 32  # greyscale image resized to 32x32 before the DCT
_REDUCE_TO = 4 * _DCT_SIZE  # large uint8 images are box-averaged down to a shorter side >= this
_THUMB = 64  # window hashes are read from a 64x64 thumbnail
VIEW_SIDE = 256
"""Longest side (px) of the grey view an image is reduced to (:func:`grey_view`)."""
_SCALES = (0.95, 0.9, 0.85, 0.8, 0.75)  # window sides, as fractions of the frame
_OFFSETS = (0.0, 0.25, 0.5, 0.75, 1.0)  # window positions, as fractions of the free margin
EDGE_SIDE = 256
"""Longest side (px) :func:`edge_view` works at (the grey view, box-reduced beyond it). At
128 px it cost under half as much (0.34 against 0.73 ms an image) and proposed the same
crops on two draws of 30, but the benchmark's second draw (60 crops each) then missed one
BUSI and one chest X-ray crop that 256 px and the plain windows alone find."""
EDGE_SIGMA = 0.01
"""Blur of :func:`edge_view`, as a fraction of its image's longest side (2.6 px at 256)."""
EDGE_GAIN = 8
"""Scale of :func:`edge_view`'s absolute differences (uint8, clipped at 255)."""
ROTATIONS = (3.5, -3.5)
"""Degrees by which the thumbnail is turned for the rotated full-frame hashes: copies
rotated by up to 5 degrees moved the full-frame hash by up to 20 bits (12 at the 90th
percentile), but lay within 8 bits of the original's turned hashes or the original within
8 bits of theirs (100 chest X-rays and 100 BUSI images)."""


def _dct_matrix(n: int = _DCT_SIZE) -> np.ndarray:
    """``(n, n)`` DCT-II matrix, unnormalised as ``scipy.fft.dct`` (``2 cos(pi k (2i+1) / 2n)``):
    ``D @ x`` is the DCT of ``x`` along its first axis (scipy itself costs 0.2 s to import)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return 2 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def _resampling(start: float, stop: float, n: int = _DCT_SIZE, size: int = _THUMB) -> np.ndarray:
    """``(n, size)`` linear-interpolation matrix sampling ``[start, stop)`` of ``size`` px."""
    centres = start + (np.arange(n) + 0.5) * (stop - start) / n - 0.5
    lo = np.floor(centres).astype(int)
    frac = centres - lo
    m = np.zeros((n, size))
    rows = np.arange(n)
    np.add.at(m, (rows, np.clip(lo, 0, size - 1)), 1 - frac)
    np.add.at(m, (rows, np.clip(lo + 1, 0, size - 1)), frac)
    return m


def _windows() -> list[tuple[float, float, float, float]]:
    """``(y0, y1, x0, x1)`` fractions: the full frame, then per scale a 5x5 grid of offsets."""
    out = [(0.0, 1.0, 0.0, 1.0)]
    for s in _SCALES:
        offsets = [t * (1 - s) for t in _OFFSETS]
        out += [(oy, oy + s, ox, ox + s) for oy in offsets for ox in offsets]
    return out


WINDOWS = _windows()
"""The windows :func:`window_hashes` hashes, in order (index 0 is the full frame)."""
_DCT8 = _dct_matrix()[:_HASH_SIZE]  # (8, 32): DCT rows
_SPANS = sorted({w[:2] for w in WINDOWS} | {w[2:] for w in WINDOWS})  # 26 distinct (start, stop)
_SPAN = {s: k for k, s in enumerate(_SPANS)}
_FOLD = np.concatenate([_DCT8 @ _resampling(a * _THUMB, b * _THUMB) for a, b in _SPANS])
_FOLD = _FOLD.astype(np.float32)  # (8 x spans, 64): resampling then DCT, per span
_FOLD_3D, _FOLD_T = _FOLD.reshape(-1, _HASH_SIZE, _THUMB), np.ascontiguousarray(_FOLD.T)
_ROW_SPAN = np.array([_SPAN[w[:2]] for w in WINDOWS])
_COL_SPAN = np.array([_SPAN[w[2:]] for w in WINDOWS])


# ----------------------------------------------------------------------------- hashing


def phash(rgb: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an image array (``(H, W)`` or ``(H, W, 3)``).

    Bit 63 is the DC coefficient, then the 8x8 block row by row; a bit is set when the
    coefficient exceeds the block's median.

    A ``uint8`` image whose shorter side is at least 256 px is first box-averaged by the
    integer factor ``shorter side // 128`` (PIL's ``reduce``), which keeps the low
    frequencies the hash reads (LANCZOS straight from 600x500 to 32x32 weighs ~110 source
    pixels per output pixel and row): 1.2-1.9 instead of 3.5-4.4 ms for a 600x500 JPEG
    here, 14 instead of 100 ms at 2048x2048. Smaller images hash exactly as before, and so
    does all of BUSI (its one 256x256 image included). On 1000 random 600x500 JPEGs the
    hashes moved by 0 bits for 513 images, 2 for 395, 4 for 83, 6-10 for 9.
    """
    a = np.asarray(rgb)
    if a.dtype == np.uint8 and min(a.shape[:2]) >= 2 * _REDUCE_TO:
        a = np.asarray(
            Image.fromarray(np.ascontiguousarray(a)).reduce(min(a.shape[:2]) // _REDUCE_TO)
        )
    a = a.astype(np.float32)
    if a.ndim == 3:  # ITU-R 601 luma, as PIL's convert("L")
        a = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    small = np.asarray(
        Image.fromarray(a).resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    return _bits((_DCT8 @ small @ _DCT8.T).reshape(1, -1))[0]  # the 2-D DCT's 8x8 lowest


def _bits(low: np.ndarray) -> list[int]:
    """One 64-bit hash per row of ``low`` (``(k, 64)`` low DCT frequencies): bit 63 is the
    first coefficient; a bit is set when its coefficient exceeds the row's median."""
    ranked = np.sort(low, axis=1)
    median = (ranked[:, 31:32] + ranked[:, 32:33]) / 2
    return np.packbits(low > median, axis=1).view(">u8").ravel().tolist()


def _exact_hash(rgb: np.ndarray) -> str:
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).data)  # the buffer itself: no copy of the pixels
    return h.hexdigest()


def _small(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``a`` box-resized to ``size`` (w, h): uint8 RGB/grey through Pillow (fast), else float."""
    if a.dtype == np.uint8 and (a.ndim == 2 or a.shape[2] in (3, 4)):
        return np.asarray(
            Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.BOX)
        )
    g = _grey(a).astype(np.float32)
    return np.asarray(Image.fromarray(np.ascontiguousarray(g)).resize(size, Image.Resampling.BOX))


def _grey(a: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as Pillow's ``convert("L")``) of ``(H, W)`` or ``(H, W, C)``, float32."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        return (
            a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
            if a.shape[2] >= 3
            else a[..., 0]
        )
    return a


def grey_view(rgb: np.ndarray) -> np.ndarray:
    """``uint8`` grey (ITU-R 601 luma) of an image, box-reduced so that its longest side is
    at most :data:`VIEW_SIDE` px: what verification compares and the hashes' thumbnail is
    read from, so that one image is converted to grey once."""
    a = np.asarray(rgb)
    h, w = a.shape[:2]
    scale = min(1.0, VIEW_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if a.dtype == np.uint8 and (a.ndim == 2 or a.shape[2] in (3, 4)):
        im = Image.fromarray(np.ascontiguousarray(a))
        im = im if im.mode == "L" else im.convert("L")
        return np.asarray(im if scale == 1.0 else im.resize(size, Image.Resampling.BOX))
    g = _grey(a if scale == 1.0 else _small(a, size))
    return np.ascontiguousarray(np.clip(np.rint(g), 0, 255).astype(np.uint8))


def _thumbnail(rgb: np.ndarray, grey: np.ndarray | None = None) -> np.ndarray:
    """The ``(64, 64)`` float32 grey thumbnail the window hashes read: from ``grey``
    (:func:`grey_view` of a ``uint8`` ``rgb``) unless that was reduced below 64 px a side;
    other dtypes from ``rgb`` itself (the view's 0-255 clip would flatten them)."""
    usable = rgb.dtype == np.uint8 and grey is not None
    if usable and (min(grey.shape) >= _THUMB or grey.shape == rgb.shape[:2]):
        return _small(grey, (_THUMB, _THUMB)).astype(np.float32)
    return _grey(_small(np.asarray(rgb), (_THUMB, _THUMB))).astype(np.float32)


def _window_bits(thumb: np.ndarray) -> list[int]:
    n = len(_SPANS)
    every = ((_FOLD_3D @ thumb) @ _FOLD_T).reshape(n, _HASH_SIZE, n, _HASH_SIZE)
    return _bits(every[_ROW_SPAN, :, _COL_SPAN, :].reshape(len(WINDOWS), -1))


def window_hashes(rgb: np.ndarray) -> tuple[int, ...]:
    """64-bit DCT hashes of the :data:`WINDOWS` of a 64x64 grey thumbnail of ``rgb``.

    Each is the pHash recipe (32x32 samples, 8x8 lowest DCT frequencies against their
    median) with resampling and DCT folded into one ``(8, 64)`` matrix per side of a
    window. The windows' sides take 26 distinct spans, so two float32 matrix products
    give every (row span, column span) block and the 126 windows are picked from them
    (about a third of the time of one product per window). Both products are stacks of
    one ``(8, 64)`` block per span: each is small enough that OpenBLAS runs it on the
    calling thread (one 2-D product of the whole stack starts its thread pool, whose
    threads spin beside the decoding: a one-thread BUSI audit then cost over twice the
    CPU time).
    """
    return tuple(_window_bits(_thumbnail(rgb)))


def _rotation(degrees: float, n: int = _DCT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of an ``n`` x ``n`` image rotated by ``degrees`` about its centre:
    per output pixel four source indices and weights (0 outside the frame, as in a rotated
    copy's black corners)."""
    c, t = (n - 1) / 2, np.deg2rad(degrees)
    y, x = np.mgrid[:n, :n].reshape(2, -1) - c
    sx, sy = c + x * np.cos(t) + y * np.sin(t), c - x * np.sin(t) + y * np.cos(t)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    idx, wts = [], []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        w = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
        inside = (yy >= 0) & (yy < n) & (xx >= 0) & (xx < n)
        idx.append(np.where(inside, yy * n + xx, 0))
        wts.append(np.where(inside, w, 0.0))
    return np.stack(idx, axis=1), np.stack(wts, axis=1).astype(np.float32)


_TURNS = [_rotation(d) for d in ROTATIONS]
_SAMPLE = _resampling(0, _THUMB).astype(np.float32)  # (32, 64): the full frame's samples
_DCT8_32 = _DCT8.astype(np.float32)


def _rotated_bits(thumb: np.ndarray) -> list[int]:
    """The full-frame hash of ``thumb`` turned by each of :data:`ROTATIONS` (the 32x32
    samples the hash reads are turned)."""
    flat = (_SAMPLE @ thumb @ _SAMPLE.T).ravel()
    turned = [(flat[idx] * wts).sum(axis=1).reshape(_DCT_SIZE, _DCT_SIZE) for idx, wts in _TURNS]
    return _bits(np.stack([(_DCT8_32 @ t @ _DCT8_32.T).ravel() for t in turned]))


def edge_view(grey: np.ndarray) -> np.ndarray:
    """Local edge energy of a ``uint8`` grey view, box-reduced to at most :data:`EDGE_SIDE`
    px a side: ``|grey - blur(grey)|`` (Gaussian of :data:`EDGE_SIGMA` of the longest side)
    times :data:`EDGE_GAIN`, clipped to uint8."""
    im = Image.fromarray(np.ascontiguousarray(np.asarray(grey, dtype=np.uint8)))
    if max(im.size) > EDGE_SIDE:
        f = max(im.size) / EDGE_SIDE
        im = im.resize((max(1, round(im.width / f)), max(1, round(im.height / f))), Image.BOX)
    g = np.asarray(im)
    blur = im.filter(ImageFilter.GaussianBlur(max(g.shape) * EDGE_SIGMA))
    diff = np.abs(g.astype(np.int16) - np.asarray(blur, dtype=np.int16))
    return np.minimum(diff * EDGE_GAIN, 255).astype(np.uint8)


def hashes_of(rgb: np.ndarray, grey: np.ndarray | None = None) -> Hashes:
    """``(exact_sha1_hex, full-frame hash, signature)`` of one decoded image. The full-frame
    hash is the first window hash: the pHash recipe read from the 64x64 box-averaged
    thumbnail (within 2 bits of :func:`phash` for 90 % of BUSI's and the chest X-rays'
    images, 6 at most), at a fraction of :func:`phash`'s cost. The signature holds the
    :data:`WINDOWS`' hashes (:func:`window_hashes`), the full-frame hashes of the
    thumbnail turned by :data:`ROTATIONS`, then the :data:`WINDOWS`' hashes of the
    :func:`edge_view`: plain ints, so a disk cache keeps them.
    ``grey``: the image's :func:`grey_view` when the caller has it (else made here)."""
    rgb = np.asarray(rgb)
    grey = grey_view(rgb) if grey is None else grey
    thumb = _thumbnail(rgb, grey)
    wins = _window_bits(thumb)
    edges = _window_bits(_small(edge_view(grey), (_THUMB, _THUMB)).astype(np.float32))
    return _exact_hash(rgb), wins[0], tuple(wins + _rotated_bits(thumb) + edges)


def image_hashes(samples: Sequence[Sample]) -> list[Hashes]:
    """Per sample :func:`hashes_of` its image (decoded with ``read_image``,
    on the decoding threads). Training takes them from its own decode instead
    (:attr:`medtl.data.cache.decode.SampleCache.hashes`).

    Raises DataError naming the file when an image cannot be read.
    """
    return map_ordered(lambda s: hashes_of(io.read_image(s.image)), samples)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def near_pairs(phashes: Sequence[int], max_distance: int) -> np.ndarray:
    """``(k, 2)`` array of index pairs ``i < j`` whose pHash distance is ``<= max_distance``.

    Vectorised XOR + popcount on ``uint64`` in row blocks (memory ~ block x n).
    """
    h = np.asarray(list(phashes), dtype=np.uint64)
    n = len(h)
    out = []
    block = 1024
    for start in range(0, n, block):
        rows = h[start : start + block]
        dist = _popcount(rows[:, None] ^ h[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = j > i
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)
