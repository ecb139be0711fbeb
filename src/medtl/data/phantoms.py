"""Deterministic breast-ultrasound phantoms: the embedded default data set.

``make_phantoms(out)`` writes a BUSI-like data set in the ``class_masks`` layout::

    out/benign/benign_0001.png        8-bit greyscale B-mode image, size x size
    out/benign/benign_0001_mask.png   8-bit mask, 0 background / 255 lesion
    out/malignant/...                 irregular, spiculated or lobulated lesions
    out/normal/...                    no lesion, all-zero mask

``make_imagefolder(out)`` writes the same images without masks (``<class>/*.png``).
``make_label_phantoms(out, labels=2)`` writes ``images/`` + ``masks/`` label maps (8-bit:
0 background, 1 lesion, 2 an echogenic ring around it, 3 a second ring) and ``labels.yaml``
(``medtl synth OUT --labels 2``); the class_masks phantoms above are unchanged.

Both call :func:`phantom_sample`, the single generator. An image consists of tissue
layers (skin line, subcutaneous fat, fibroglandular tissue, pectoral muscle) with smooth
heterogeneity, depth attenuation, correlated multiplicative Rayleigh speckle and log
compression, sometimes a sector (fan) outline with dark top corners. Lesions are
hypoechoic with low-level internal echoes: benign ones oval, smooth-edged and
"wider than tall", sometimes with posterior acoustic enhancement; malignant ones
lobulated or spiculated with an indistinct, echogenic-halo margin, sometimes with
posterior shadowing. The lesion's equivalent diameter is 10-28% of the image side.

Image ``i`` of class ``c`` is drawn from its own seed ``(seed, c, i)``, so it is the same
file whatever ``n`` is; equal ``(n, size, seed)`` give byte-identical files.

Example::

    >>> from medtl.data.phantoms import make_phantoms
    >>> root = make_phantoms("/tmp/phantoms", n=12, size=64)  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
    ['benign', 'malignant', 'normal']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write

CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
# BUSI: 437 benign, 210 malignant, 133 normal images.
PROPORTIONS: dict[str, float] = {"benign": 437 / 780, "malignant": 210 / 780, "normal": 133 / 780}
MIN_SIZE, MAX_SIZE = 16, 2048
LESION_DIAMETER = (0.10, 0.28)  # equivalent diameter as a fraction of the image side

_TWO_PI = 2.0 * np.pi
_N_ANGLES = 1024


# --------------------------------------------------------------------------- helpers


def _lowfreq(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth unit-variance noise with about ``cells`` blobs across the image."""
    cells = max(2, min(cells, size))
    z = ndimage.gaussian_filter(rng.standard_normal((cells, cells)), 1.0, mode="wrap")
    z = ndimage.zoom(z, size / cells, order=1, mode="nearest", grid_mode=True)[:size, :size]
    return (z - z.mean()) / (z.std() + 1e-8)


def _wavy(rng: np.random.Generator, x: np.ndarray, base: float, amp: float) -> np.ndarray:
    """A gently undulating layer boundary ``y(x)`` (fractions of the image side)."""
    out = np.full_like(x, base)
    for k in (1, 2, 3):
        out += amp / k * np.sin(_TWO_PI * (k * rng.uniform(0.5, 1.0)) * x + rng.uniform(0, _TWO_PI))
    return out


def _speckle(rng: np.random.Generator, size: int, looks: int = 2) -> np.ndarray:
    """Correlated multiplicative speckle with mean 1.

    Each look is Rayleigh (|smoothed complex Gaussian|); ``looks`` of them are compounded
    (root mean square), as spatial compounding on breast scanners does, which tames the
    Rayleigh law's dark tail. Speckle cells are wider laterally than axially.
    """
    scale = max(1.0, size / 256)
    sigma = (0, 0.7 * scale, 1.3 * scale)  # (look, axial, lateral)
    z = ndimage.gaussian_filter(rng.standard_normal((2 * looks, size, size)), sigma)
    env = np.sqrt(np.mean(z**2, axis=0))
    return env / env.mean()


def _tissue(rng: np.random.Generator, size: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Echogenicity (linear amplitude) of the layered breast tissue without a lesion."""
    skin = rng.uniform(0.025, 0.045)
    skin_w = max(1.5 / size, 0.012)
    fat_end = _wavy(rng, x[0], rng.uniform(0.15, 0.27), 0.02)
    gland_end = _wavy(rng, x[0], rng.uniform(0.72, 0.86), 0.03)
    tex = _lowfreq(rng, size, 12)
    fine = _lowfreq(rng, size, 32)

    fat = 0.30 + 0.06 * tex + 0.04 * fine
    gland = 0.80 + 0.12 * tex + 0.10 * fine
    stri = np.sin(_TWO_PI * (y * rng.uniform(14, 22) + 0.05 * tex))
    muscle = 0.42 + 0.10 * stri + 0.04 * fine
    echo = np.select(
        [y < skin, y < skin + skin_w, y < fat_end, y < gland_end],
        [np.full_like(y, 0.08), np.full_like(y, 1.3), fat, gland],
        muscle,
    )
    # Cooper's ligaments: thin bright oblique lines through the fat.
    phase = rng.uniform(1.0, 2.5) * x + rng.uniform(3.0, 6.0) * y + 0.5 * tex
    lig = (np.abs(np.sin(_TWO_PI * phase)) > 0.96) & (fine > -0.3)
    in_fat = (y >= skin + skin_w) & (y < fat_end)
    echo = np.where(in_fat & lig, echo + 0.3, echo)
    return ndimage.gaussian_filter(np.clip(echo, 0.02, None), max(0.6, size / 160))


def _radius_profile(rng: np.random.Generator, cls: str) -> np.ndarray:
    """Relative lesion radius ``g(theta)`` on ``_N_ANGLES`` angles (before scaling)."""
    th = np.linspace(0.0, _TWO_PI, _N_ANGLES, endpoint=False)
    rot = rng.uniform(-0.35, 0.35)
    if cls == "benign":
        a, b = rng.uniform(1.15, 1.8), 1.0  # wider than tall
        g = 1.0 / np.sqrt((np.cos(th - rot) / a) ** 2 + (np.sin(th - rot) / b) ** 2)
        for k in (2, 3):  # at most a few gentle lobulations
            g *= 1.0 + rng.uniform(0.0, 0.04) * np.cos(k * th + rng.uniform(0, _TWO_PI))
        return g
    a, b = rng.uniform(0.8, 1.1), rng.uniform(0.9, 1.3)  # often taller than wide
    g = 1.0 / np.sqrt((np.cos(th - rot) / a) ** 2 + (np.sin(th - rot) / b) ** 2)
    for k in range(3, 8):  # lobulation
        g += rng.uniform(0.04, 0.14) / np.sqrt(k - 2) * np.cos(k * th + rng.uniform(0, _TWO_PI))
    for k in range(9, 17):  # angular / microlobulated margin
        g += rng.uniform(0.0, 0.035) * np.cos(k * th + rng.uniform(0, _TWO_PI))
    if rng.random() < 0.7:  # spicules
        for t0 in rng.uniform(0, _TWO_PI, rng.integers(4, 11)):
            d = np.angle(np.exp(1j * (th - t0)))
            g += rng.uniform(0.35, 0.8) * np.exp(-0.5 * (d / rng.uniform(0.035, 0.07)) ** 2)
    return np.clip(g, 0.35, None)


def _sector(rng: np.random.Generator, size: int, y: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """Visible region of a sector (fan) scan, or None for a linear-probe image."""
    if rng.random() >= 0.35:
        return None
    apex = rng.uniform(0.5, 0.8)  # apex above the image top, in image sides
    half = np.deg2rad(rng.uniform(26, 34))
    ang = np.arctan2(x - 0.5, y + apex)
    dist = np.hypot(x - 0.5, y + apex)
    return (np.abs(ang) <= half) & (dist >= apex + 0.01)


def _lesion_mask(
    rng: np.random.Generator, cls: str, size: int, visible: np.ndarray | None
) -> tuple[np.ndarray, float, float] | None:
    """Hard lesion mask with its centre (row, column); None if it cannot avoid the fan.

    With ``visible=None`` the first placement is always accepted.
    """
    g = _radius_profile(rng, cls)
    lo, hi = LESION_DIAMETER
    diam = rng.uniform(lo + (0.03 if cls == "malignant" else 0.0), hi) * size
    radius = (diam / 2) / np.sqrt(np.mean(g**2))  # area = pi * R^2 * mean(g^2)
    extent = radius * g.max()
    margin = 1.0 + 0.03 * size
    if extent > size / 2 - margin:  # keep spiculated shapes inside
        radius *= (size / 2 - margin) / extent
        extent = size / 2 - margin
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(20):
        cy = rng.uniform(
            max(extent + margin, 0.30 * size), min(size - extent - margin, 0.68 * size)
        )
        cx = rng.uniform(extent + margin, size - extent - margin)
        cy = float(np.clip(cy, extent + margin, size - 1 - extent - margin))
        rho = np.hypot(yy - cy, xx - cx)
        th = np.mod(np.arctan2(yy - cy, xx - cx), _TWO_PI)
        gi = np.interp(th, np.linspace(0, _TWO_PI, _N_ANGLES, endpoint=False), g, period=_TWO_PI)
        mask = rho <= radius * gi
        mask[int(round(cy)), int(round(cx))] = True  # never empty, even at 16 px
        if visible is None or not (mask & ~visible).any():
            return mask, cy, cx
    return None


def _posterior(mask: np.ndarray, size: int, strength: float) -> np.ndarray:
    """Multiplicative gain below the lesion: >1 enhancement, <1 shadowing."""
    rows = np.arange(size)[:, None]
    has = mask.any(axis=0)
    bottom = np.where(has, size - 1 - np.argmax(mask[::-1], axis=0), size)
    width = ndimage.gaussian_filter1d(has.astype(np.float64), max(1.0, size / 80))
    depth = (rows - bottom[None, :]) / size
    fade = np.where(depth > 0, np.exp(-np.clip(depth, 0, None) / 0.35), 0.0)
    fade = ndimage.gaussian_filter(fade * width[None, :], max(0.7, size / 128))
    return 1.0 + strength * fade


# --------------------------------------------------------------------------- generator


def phantom_sample(rng: np.random.Generator, size: int, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: ``(image uint8 (size, size), mask bool (size, size))``.

    ``cls`` is ``"benign"``, ``"malignant"`` or ``"normal"`` (all-False mask). The result
    depends only on ``rng``'s state, ``size`` and ``cls``.
    """
    if cls not in CLASSES:
        raise MedtlError(f"unknown phantom class '{cls}'; choose one of {', '.join(CLASSES)}")
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    echo = _tissue(rng, size, y, x)
    visible = _sector(rng, size, y, x)
    mask = np.zeros((size, size), bool)

    if cls != "normal":
        found = _lesion_mask(rng, cls, size, visible)
        if found is None:  # lesion would touch the fan's dark corners: use a linear probe
            visible = None
            found = _lesion_mask(rng, cls, size, None)
        mask = found[0] if found is not None else mask
        benign = cls == "benign"
        edge = max(0.5, size / 256) * (1.0 if benign else 1.6)
        soft = ndimage.gaussian_filter(mask.astype(np.float64), edge)
        inside = rng.uniform(0.09, 0.17) * (1.0 + 0.35 * _lowfreq(rng, size, 10))
        if not benign:  # scattered microcalcifications
            inside = inside + 0.9 * (rng.random((size, size)) < 0.004)
        echo = echo * (1.0 - soft) + np.clip(inside, 0.03, None) * soft
        if not benign:  # echogenic halo around an indistinct margin
            halo = ndimage.gaussian_filter(mask.astype(np.float64), 3 * edge) - soft
            echo = echo + rng.uniform(0.2, 0.5) * np.clip(halo, 0, None)
        if rng.random() < 0.6:
            gain = rng.uniform(0.35, 0.7) if benign else -rng.uniform(0.4, 0.65)
            echo = echo * _posterior(mask, size, gain)

    # Depth attenuation, partly compensated by time-gain control.
    echo = echo * np.exp(-rng.uniform(0.6, 1.4) * y)
    env = echo * _speckle(rng, size)
    # Log compression to a dynamic range of about 40 dB.
    db = 20.0 * np.log10(env + 1e-6)
    dr = rng.uniform(36.0, 46.0)
    img = (db - (rng.uniform(7.0, 11.0) - dr)) / dr
    img = np.clip(img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.012, img.shape), 0.0, 1.0)
    if visible is not None:
        img = np.where(visible, img, 0.0)
    return np.round(img * 255).astype(np.uint8), mask


# --------------------------------------------------------------------------- writers


def class_counts(n: int) -> dict[str, int]:
    """Images per class for ``n`` images: BUSI proportions, at least one each when n >= 3."""
    raw = {c: n * p for c, p in PROPORTIONS.items()}
    counts = {c: int(np.floor(v)) for c, v in raw.items()}
    by_rest = sorted(CLASSES, key=lambda c: (-(raw[c] - counts[c]), CLASSES.index(c)))
    for c in by_rest[: n - sum(counts.values())]:
        counts[c] += 1
    if n >= 3:
        for c in CLASSES:
            if counts[c] == 0:
                counts[max(CLASSES, key=lambda k: counts[k])] -= 1
                counts[c] = 1
    return counts


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(n: int, size: int, seed: int) -> None:
    if not _is_int(n) or n < 1:
        raise MedtlError(f"n={n!r} is invalid; pass a whole number of images >= 1")
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise MedtlError(
            f"size={size!r} is invalid; pass a side in pixels from {MIN_SIZE} to {MAX_SIZE}"
        )
    if not _is_int(seed) or seed < 0:
        raise MedtlError(f"seed={seed!r} is invalid; pass a whole number >= 0")


def _save_png(path: Path, array: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG")

    atomic_write(path, save)


def _write(out: str | Path, n: int, size: int, seed: int, masks: bool) -> Path:
    _check(n, size, seed)
    root = Path(out)
    for ci, cls in enumerate(CLASSES):
        for i in range(1, class_counts(int(n))[cls] + 1):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), ci, i]))
            image, mask = phantom_sample(rng, int(size), cls)
            _save_png(root / cls / f"{cls}_{i:04d}.png", image)
            if masks:
                _save_png(root / cls / f"{cls}_{i:04d}_mask.png", mask.astype(np.uint8) * 255)
    return root


def make_phantoms(out: str | Path, n: int = 120, size: int = 128, seed: int = 0) -> Path:
    """Write ``n`` phantom images with masks in the ``class_masks`` layout; return ``Path(out)``.

    Files: ``out/<class>/<class>_0001.png`` and ``<class>_0001_mask.png`` (0/255) for
    classes benign, malignant, normal in BUSI proportions (:func:`class_counts`). Existing
    files of the same name are replaced atomically; other files in ``out`` are left alone.
    Raises :class:`~medtl.utils.errors.MedtlError` for ``n < 1``, ``size`` outside 16..2048 or a
    negative ``seed``.
    """
    return _write(out, n, size, seed, masks=True)


def make_imagefolder(out: str | Path, n: int = 120, size: int = 128, seed: int = 0) -> Path:
    """Write the same images as :func:`make_phantoms`, without masks (ImageFolder layout)."""
    return _write(out, n, size, seed, masks=False)


# --------------------------------------------------------------------------- label maps

LABEL_NAMES: tuple[str, ...] = ("lesion", "ring", "outer_ring")


def _rings(lesion: np.ndarray, size: int, labels: int) -> np.ndarray:
    """Label map: 1 the lesion, 2 a ring around it, 3 a second ring outside that one."""
    width = max(2, round(size / 10))
    out = lesion.astype(np.uint8)
    inner = lesion
    for k in range(2, labels + 1):
        outer = ndimage.binary_dilation(inner, iterations=width)
        out[outer & ~inner] = k
        inner = outer
    return out


def label_phantom(
    rng: np.random.Generator, size: int, labels: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom with ``labels`` structures: ``(image uint8, label map uint8)``. The lesion
    is a benign or malignant phantom lesion (:func:`phantom_sample`), the rings are
    echogenic bands (brighter with each ring) around it."""
    cls = "benign" if rng.random() < 0.6 else "malignant"
    image, lesion = phantom_sample(rng, size, cls)
    label_map = _rings(lesion, size, labels)
    img = image.astype(np.float64)
    for k in range(2, labels + 1):
        band = label_map == k
        img[band] = np.clip(150 + 40 * (k - 2) + rng.normal(0, 12, int(band.sum())), 0, 255)
    return np.round(img).astype(np.uint8), label_map


def make_label_phantoms(
    out: str | Path, n: int = 60, size: int = 64, seed: int = 0, labels: int = 2
) -> Path:
    """Write ``n`` phantoms with ``labels`` (1-3) structures in the ``paired`` layout:
    ``out/images/phantom_0001.png`` (8-bit grey) and ``out/masks/phantom_0001.png`` (8-bit
    label map: 0 background, 1 lesion, 2 ring, 3 outer ring), plus ``out/labels.yaml``
    naming the labels. Image ``i`` comes from its own seed ``(seed, 99, labels, i)``."""
    _check(n, size, seed)
    if not _is_int(labels) or not 1 <= labels <= len(LABEL_NAMES):
        raise MedtlError(f"labels={labels!r} is invalid; pass 1, 2 or 3 structures")
    root = Path(out)
    for i in range(1, int(n) + 1):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99, int(labels), i]))
        image, label_map = label_phantom(rng, int(size), int(labels))
        _save_png(root / "images" / f"phantom_{i:04d}.png", image)
        _save_png(root / "masks" / f"phantom_{i:04d}.png", label_map)
    names = "".join(f"{k}: {name}\n" for k, name in enumerate(LABEL_NAMES[:labels], 1))
    atomic_write(root / "labels.yaml", lambda p: Path(p).write_text(names, encoding="utf-8"))
    return root
