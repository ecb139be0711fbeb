"""``data.cache=disk``: decoded, resized uint8 rows in memory-mapped ``.npy`` files.

One folder per fingerprint (:func:`medtl.data.cache.modes.fingerprint`) under the cache root::

    ~/.cache/medtl/<fingerprint>/images.npy   uint8 (N, 3, S, S)
                                 masks.npy    uint8 (N, 1, S, S)   (mask tasks)
                                 meta.json    sizes, hashes, N, S  (written last)

The folder is filled under a temporary name in the same root (``.<fingerprint>.*.tmp``)
and renamed into place when complete, so a reader sees a whole cache or none: a run
killed while filling leaves only a temporary folder (removed by the next fill of that
fingerprint on the same machine), and two processes filling the same fingerprint at once
both finish, the second one's rename failing harmlessly. ``meta.json`` carries a BLAKE2b
checksum of each array file and of its own other fields, checked on every read: a folder
that cannot be read back (deleted, emptied or edited files, edited sizes or hashes, another
format) is logged and rebuilt, never reused. The rows are opened copy-on-write (``mmap_mode="c"``):
pages are read from the file as used, and nothing a consumer writes reaches the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.data.cache.decode import DecodeSpec, SampleCache, fill
from medtl.data.layouts import Sample
from medtl.utils.errors import DataError
from medtl.utils.records import Shape, load_json

log = logging.getLogger("medtl")

META = "meta.json"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_FORMAT = "medtl-disk-cache-2"
_ARRAYS = ("images.npy", "masks.npy")


def file_digest(path: Path) -> str:
    """BLAKE2b (128 bit) of a file's bytes, read in 4 MB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(4 * 2**20):
            h.update(block)
    return h.hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    rest = {k: v for k, v in meta.items() if k != "checksums"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _check_sums(folder: Path, meta: dict[str, Any]) -> None:
    """ValueError naming the first file (or meta.json) whose checksum does not match."""
    sums = meta.get("checksums") or {}
    if sums.get("meta") != _meta_digest(meta):
        raise ValueError(f"{folder / META}: its fields do not match their checksum")
    for name in _ARRAYS:
        path = folder / name
        if name in sums or path.exists():
            if not path.is_file() or path.stat().st_size == 0:
                raise ValueError(f"{path}: missing or empty")
            if file_digest(path) != sums.get(name):
                raise ValueError(f"{path}: its bytes do not match the checksum in {META}")


def _open_rows(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    rows = np.load(path, mmap_mode="c")
    if rows.dtype != np.uint8 or tuple(rows.shape) != shape:
        raise ValueError(f"{path}: {rows.dtype} {rows.shape}, expected uint8 {shape}")
    return torch.from_numpy(rows)


def read_disk(samples: Sequence[Sample], spec: DecodeSpec, folder: Path) -> SampleCache:
    """The cache in ``folder`` (ValueError/OSError when it is missing or does not fit)."""
    shape = Shape(folder / META, "the cache folder is decoded again")
    meta = shape.mapping(load_json(folder / META, shape.fix))
    n, s = len(samples), spec.size
    if meta.get("format") != _FORMAT or meta.get("n") != n or meta.get("size") != s:
        raise ValueError(f"{folder}: another cache format or size")
    _check_sums(folder, meta)
    images = _open_rows(folder / "images.npy", (n, 3, s, s))
    masks = _open_rows(folder / "masks.npy", (n, 1, s, s)) if spec.with_masks else None
    sizes = [(int(h), int(w)) for h, w in meta["sizes"]]
    hashes = [  # (sha1, pHash, window hashes); caches written before the windows have none
        (str(h[0]), int(h[1]), tuple(int(w) for w in (h[2] if len(h) > 2 else ())))
        for h in meta["hashes"]
    ]
    return SampleCache.of(samples, s, images, masks, sizes, hashes, "disk")


def _new_rows(path: Path, shape: tuple[int, ...]) -> Any:
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def write_disk(samples: Sequence[Sample], spec: DecodeSpec, folder: Path) -> None:
    """Decode ``samples`` into a temporary folder beside ``folder`` and rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.*.tmp"):
        if not _alive(stale):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
    prefix = f".{folder.name}.{os.getpid()}-{_HOST}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder.parent))
    try:
        n, s = len(samples), spec.size
        images = _new_rows(tmp / "images.npy", (n, 3, s, s))
        masks = _new_rows(tmp / "masks.npy", (n, 1, s, s)) if spec.with_masks else None
        t_masks = torch.from_numpy(masks) if masks is not None else None
        sizes, hashes = fill(samples, spec, torch.from_numpy(images), t_masks)
        for rows in (images, masks):
            if rows is not None:
                rows.flush()
        del images, masks, t_masks
        meta: dict[str, Any] = {"format": _FORMAT, "n": n, "size": s, "sizes": sizes}
        meta["hashes"] = hashes
        meta = json.loads(json.dumps(meta))  # the checksum covers what a reader will see
        meta["checksums"] = {
            **{name: file_digest(tmp / name) for name in _ARRAYS if (tmp / name).is_file()},
            "meta": _meta_digest(meta),
        }
        with open(tmp / META, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another process put a complete cache there first
            if not (folder / META).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _alive(tmp: Path) -> bool:
    """Whether the process that made temporary folder ``tmp`` may still be filling it: its
    pid and host are in the name; another machine's (a shared cache folder) counts as alive."""
    try:
        pid_text, host = tmp.name.rsplit(".", 2)[-2].split("-")[:2]
        if host != _HOST:
            return True
        os.kill(int(pid_text), 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def disk_samples(samples: Sequence[Sample], spec: DecodeSpec, folder: Path) -> SampleCache:
    """The disk cache of ``samples`` in ``folder``: read back when there, else decoded into it."""
    if (folder / META).is_file():
        try:
            cache = read_disk(samples, spec, folder)
            log.info(f"decoded images: reused {folder} ({len(samples)} images)")
            return cache
        except (OSError, ValueError, KeyError, TypeError, EOFError, DataError) as exc:
            log.warning(f"{folder}: unreadable cache ({exc}); decoding again")
            shutil.rmtree(folder, ignore_errors=True)
    write_disk(samples, spec, folder)
    log.info(f"decoded images: wrote {folder} ({len(samples)} images)")
    return read_disk(samples, spec, folder)
