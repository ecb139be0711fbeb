"""Where the decoded samples live (``data.cache``) and how a decode is reused.

``data.cache`` chooses where the decoded, resized ``uint8`` arrays live:

- ``memory`` (default): one ``(N, 3, S, S)`` tensor (and ``(N, 1, S, S)`` masks) in RAM;
- ``disk``: the same arrays in ``.npy`` files under the cache folder
  (:func:`cache_root`: ``data.cache_dir``, else ``$MEDTL_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/medtl``, else ``~/.cache/medtl``), memory-mapped, so a data set larger
  than RAM trains from the page cache and later runs decode nothing
  (:mod:`medtl.data.cache.disk`);
- ``none``: nothing is kept; every access decodes the file again (one pass at the start
  still reads every image once, for its size and hashes).

Every mode decodes through :func:`medtl.data.cache.decode.decode_item` (the one decode:
:func:`medtl.data.readers.io.read_image`, the masks, the resize, :func:`medtl.data.dedup.hashes_of`),
on worker processes or threads (:mod:`medtl.utils.parallel`). Within :func:`reuse_decoded` (one ``prepare``,
one comparison) a decoded set is decoded once and handed to every later caller with the same
fingerprint (:func:`fingerprint`: file list, sizes, mtimes, image size, masks, windows), and
each mask file is opened once: the decode takes the pixels the mask scan read
(:mod:`medtl.data.readers.kept`).

Example::

    >>> spec = DecodeSpec(size=64, with_masks=True)
    >>> cache = cached_samples(discover("phantoms").samples, spec, mode="memory")  # doctest: +SKIP
    >>> cache.images.shape, cache.sizes[0], cache.hashes[0]                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from medtl.configuration.names import CACHE_MODES
from medtl.data.cache.decode import DecodeSpec, SampleCache, streamed
from medtl.data.cache.disk import disk_samples
from medtl.data.layouts import Sample
from medtl.data.readers import kept
from medtl.data.refs import source_file
from medtl.utils.memo import ScopedMemo

log = logging.getLogger("medtl")

CACHE_ENV = "MEDTL_CACHE_DIR"
FORMAT = "medtl-decoded-2"  # 2: pHash of large images box-averaged first
"""Part of every fingerprint: bump it when decoding, resizing or hashing rules change."""

F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- fingerprint


def _stat_line(path: Path) -> bytes:
    try:
        st = source_file(path).stat()
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:  # decoding names the file and the fix
        size, mtime = -1, -1
    return f"{Path(path).absolute()}\0{size}\0{mtime}\n".encode()


def fingerprint(samples: Sequence[Sample], spec: DecodeSpec) -> str:
    """What the decoded rows depend on, hashed: every image (and, with masks, every mask)
    path with its byte size and mtime, in order, the size, the windows, ``data.mask_resize``
    (when not ``none``) and :data:`FORMAT`."""
    h = hashlib.sha256()
    head = {
        "format": FORMAT,
        "size": spec.size,
        "masks": spec.with_masks,
        "window": spec.window,
        "fallback": spec.fallback,
    }
    if spec.masks is not None and spec.masks.values:  # label maps decode to other rows
        head["mask_scheme"] = spec.masks.describe()
    resize = getattr(spec.masks, "resize", "none")  # data.mask_resize, carried by the scheme
    if spec.with_masks and resize != "none":  # resized masks are other rows too
        head["mask_resize"] = resize
    h.update(json.dumps(head, sort_keys=True).encode())
    for s in samples:
        h.update(_stat_line(s.image))
        for m in s.masks if spec.with_masks else ():
            h.update(b"\tmask " + _stat_line(m))
    return h.hexdigest()[:32]


def cache_root(folder: str | Path | None = None) -> Path:
    """Where ``data.cache=disk`` keeps its files: ``folder`` (``data.cache_dir``), else
    ``$MEDTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/medtl``, else ``~/.cache/medtl``."""
    if folder:
        return Path(folder).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "medtl"
    return Path.home() / ".cache" / "medtl"


# ----------------------------------------------------------------------------- reuse

_MEMO = ScopedMemo()  # fingerprint and mode -> SampleCache


@contextmanager
def reuse_decoded() -> Iterator[None]:
    """Within this block (nested blocks join the outer one), a data set decoded once is
    handed to every later :func:`cached_samples` call with the same fingerprint and mode,
    and the mask files the mask scan read are not read again by the decode
    (:mod:`medtl.data.readers.kept`); both are released when the outermost block ends."""
    with _MEMO.scope(), kept.keeping():
        yield


def reusing_decoded(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`reuse_decoded` (e.g. a whole comparison)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reuse_decoded():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _remember(key: str, cache: SampleCache, limit_mb: int) -> None:
    if not _MEMO.active:
        return
    _MEMO[key] = cache
    # RAM-held sets beyond the limit are dropped oldest first (never the newest)
    while len(_MEMO) > 1 and sum(c.nbytes for c in _MEMO.values()) > limit_mb * 2**20:
        _MEMO.popitem(last=False)


def cached_samples(
    samples: Sequence[Sample],
    spec: DecodeSpec,
    mode: str = "memory",
    folder: str | Path | None = None,
    limit_mb: int = 4096,
) -> SampleCache:
    """The decoded set of ``samples`` in ``mode`` (:data:`CACHE_MODES`): from this block's
    earlier decode (:func:`reuse_decoded`), from the disk cache, or decoded now.

    ``folder`` is the disk cache's folder (None: :func:`cache_root`); ``limit_mb`` bounds
    the RAM that decoded sets kept for reuse may hold together.
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache '{mode}' is not one of {', '.join(CACHE_MODES)}")
    key = f"{mode}:{fingerprint(samples, spec)}"
    hit = _MEMO.get(key)
    if hit is not None:
        _MEMO.move_to_end(key)
        return hit.with_samples(samples)
    if mode == "disk" and samples:
        cache = disk_samples(samples, spec, cache_root(folder) / key.split(":", 1)[1])
    elif mode == "none":
        cache = streamed(samples, spec)
    else:
        cache = SampleCache(
            samples, spec.size, spec.with_masks, spec.window, spec.fallback, spec.masks
        )
    _remember(key, cache, limit_mb)
    return cache
