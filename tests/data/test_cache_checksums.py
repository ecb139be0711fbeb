"""The disk cache checks its arrays and metadata on every read and rebuilds what is off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medtl.data.cache import disk as disk_cache
from medtl.data.cache.decode import DecodeSpec
from medtl.data.cache.modes import CACHE_ENV, cached_samples, fingerprint
from medtl.data.layouts import discover
from medtl.data.readers import io
from tests.conftest import record_calls

SPEC = DecodeSpec(size=32, with_masks=True)


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    return record_calls(monkeypatch, io, "read_image")


@pytest.fixture
def built(tmp_path, monkeypatch):
    """Six phantoms, their disk cache folder and the rows a fresh decode gives."""
    from medtl.data.phantoms import make_phantoms

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    samples = discover(make_phantoms(tmp_path / "data", n=6, size=32, seed=1)).samples
    first = cached_samples(samples, SPEC, mode="disk")
    rows = first.images[list(range(6))].clone()
    return samples, tmp_path / "cache" / fingerprint(samples, SPEC), rows


def _edit_pixel(folder: Path) -> None:
    arr = np.load(folder / "images.npy", mmap_mode="r+")
    arr[2, 0, 5, 5] = 255 - int(arr[2, 0, 5, 5])
    arr.flush()


def _edit_hash(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["hashes"][0][0] = "0" * len(str(meta["hashes"][0][0]))
    (folder / "meta.json").write_text(json.dumps(meta))


def _edit_size(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["sizes"][1] = [1, 1]
    (folder / "meta.json").write_text(json.dumps(meta))


EDITS = {
    "pixel": _edit_pixel,
    "hash": _edit_hash,
    "size": _edit_size,
    "empty_images": lambda f: (f / "images.npy").write_bytes(b""),
    "empty_masks": lambda f: (f / "masks.npy").write_bytes(b""),
    "truncated_images": lambda f: (f / "images.npy").write_bytes(
        (f / "images.npy").read_bytes()[:200]
    ),
    "deleted_masks": lambda f: (f / "masks.npy").unlink(),
    "checksums_removed": lambda f: (f / "meta.json").write_text(
        json.dumps(
            {k: v for k, v in json.loads((f / "meta.json").read_text()).items() if k != "checksums"}
        )
    ),
}


def test_intact_cache_is_reused(built, decodes):
    samples, folder, rows = built
    again = cached_samples(samples, SPEC, mode="disk")
    assert decodes == [] and torch.equal(again.images[list(range(6))], rows)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_cache_is_rebuilt_not_reused(built, edit, caplog):
    samples, folder, rows = built
    EDITS[edit](folder)
    with caplog.at_level("WARNING", logger="medtl"):
        again = cached_samples(samples, SPEC, mode="disk")
    assert "unreadable cache" in caplog.text and "decoding again" in caplog.text, edit
    assert torch.equal(again.images[list(range(6))], rows)  # the true pixels
    assert again.sizes == built_sizes(samples)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["checksums"]["images.npy"] == disk_cache.file_digest(folder / "images.npy")


def built_sizes(samples) -> list[tuple[int, int]]:
    """The (H, W) of every sample as decoded (what the cache's sizes must say)."""
    return [tuple(io.read_image(s.image).shape[:2]) for s in samples]


def test_file_digest_is_blake2b_of_the_bytes(tmp_path):
    import hashlib

    p = tmp_path / "x.bin"
    p.write_bytes(b"abc" * 5_000_000)  # over one 4 MB block
    assert (
        disk_cache.file_digest(p) == hashlib.blake2b(b"abc" * 5_000_000, digest_size=16).hexdigest()
    )
