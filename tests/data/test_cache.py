"""One decode per image: counted in training and a comparison; data.cache=memory|disk|none."""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.data.cache import disk as disk_cache
from medtl.data.cache.decode import DecodeSpec
from medtl.data.cache.modes import CACHE_ENV, cached_samples, fingerprint, reuse_decoded
from medtl.data.dataset import CachedDataset
from medtl.data.layouts import discover
from medtl.data.readers import io
from medtl.utils import parallel
from medtl.utils.errors import DataError
from tests.conftest import TINY, record_calls, train_tiny

SPEC = DecodeSpec(size=32, with_masks=True)


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every image decode (:func:`medtl.data.readers.io.read_image`) from now on, by path.
    Decoding runs on threads of this process (forked workers would record in their own
    copy of the list): the counts hold alone and under pytest-xdist alike."""
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: False)
    return record_calls(monkeypatch, io, "read_image")


@pytest.fixture
def data(tmp_path) -> Path:
    """Six phantoms of this test's own (the tests change files)."""
    from medtl.data.phantoms import make_phantoms

    return make_phantoms(tmp_path / "data", n=6, size=32, seed=1)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _same(a, b) -> None:
    n = len(a)
    assert len(b) == n and a.sizes == b.sizes and a.hashes == b.hashes
    assert torch.equal(a.images[list(range(n))], b.images[list(range(n))])
    assert torch.equal(a.masks[list(range(n))], b.masks[list(range(n))])


# ----------------------------------------------------------------------------- counts
@pytest.mark.slow
def test_train_decodes_each_image_once(phantoms, tmp_path, decodes):
    train_tiny(phantoms, tmp_path)  # grouping (hashes) and the loaders' cache: one decode
    n = len(discover(phantoms).samples)
    assert len(decodes) == n and set(Counter(decodes).values()) == {1}


@pytest.mark.slow
def test_second_training_with_the_disk_cache_decodes_nothing(phantoms, tmp_path, decodes):
    disk = ["data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}"]
    train_tiny(phantoms, tmp_path / "a", *disk)
    assert len(decodes) == len(discover(phantoms).samples)
    decodes.clear()
    run = train_tiny(phantoms, tmp_path / "b", *disk)
    assert decodes == [] and (run / "model.pt").is_file()


@pytest.mark.slow
def test_comparison_decodes_each_image_once(tmp_path, decodes):
    from medtl.comparison import compare
    from medtl.data.phantoms import make_phantoms

    root = make_phantoms(tmp_path / "ph", n=12, size=32, seed=0)
    decodes.clear()
    base = [f"data.root={root}", "task=classification", *TINY]
    out = compare(base, ["model.strategy=frozen,finetune"], folds=2, out=tmp_path / "cmp")
    assert len(list((out / "cells").glob("*/fold*/eval/val/summary.json"))) == 4
    # the design's grouping, 4 trainings and 4 evaluations: every image decoded once
    assert len(decodes) == 12 and set(Counter(decodes).values()) == {1}


def test_reuse_within_a_block_only(data, decodes):
    samples = discover(data).samples
    with reuse_decoded():
        first = cached_samples(samples, SPEC)
        again = cached_samples(samples, SPEC)
    assert len(decodes) == 6 and again.images is first.images
    cached_samples(samples, SPEC)  # outside a block nothing is kept
    assert len(decodes) == 12


# ----------------------------------------------------------------------------- disk
def test_disk_cache_reused_across_runs_and_equal_to_memory(data, cache_dir, decodes):
    samples = discover(data).samples
    disk = cached_samples(samples, SPEC, mode="disk")
    assert len(decodes) == 6
    (folder,) = [p for p in cache_dir.iterdir()]
    assert folder.name == fingerprint(samples, SPEC)
    assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "masks.npy", "meta.json"]
    again = cached_samples(samples, SPEC, mode="disk")  # a later run: nothing decoded
    assert len(decodes) == 6 and again.mode == "disk" and again.nbytes == 0
    memory = cached_samples(samples, SPEC, mode="memory")
    _same(disk, memory)
    _same(again, memory)
    for i in range(len(samples)):  # what training sees, item by item
        a, b = CachedDataset(memory, range(6))[i], CachedDataset(again, range(6))[i]
        assert all(torch.equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))


def test_disk_cache_invalidated_when_a_file_changes(data, cache_dir, decodes):
    samples = discover(data).samples
    before = cached_samples(samples, SPEC, mode="disk")
    path = samples[2].image
    st = path.stat()
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(path)  # new pixels, new size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size tells
    after = cached_samples(samples, SPEC, mode="disk")
    assert len(decodes) == 12 and len(list(cache_dir.iterdir())) == 2
    assert not torch.equal(after.images[2], before.images[2])
    assert torch.equal(after.images[2], torch.full((3, 32, 32), 7, dtype=torch.uint8))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, newer mtime
    cached_samples(samples, SPEC, mode="disk")
    assert len(decodes) == 18


def test_disk_cache_never_half_written(data, cache_dir, monkeypatch):
    samples = discover(data).samples
    real, calls = io.read_image, []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise DataError(f"{path}: not a readable image")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_image", failing)
    with pytest.raises(DataError, match="not a readable image"):
        cached_samples(samples, SPEC, mode="disk")
    assert list(cache_dir.iterdir()) == []  # no cache, no temporary folder left
    monkeypatch.setattr(io, "read_image", real)
    fp = fingerprint(samples, SPEC)
    host = disk_cache._HOST
    stale = cache_dir / f".{fp}.999999999-{host}-x.tmp"  # a killed run's (no such process)
    elsewhere = cache_dir / f".{fp}.999999999-otherhost-x.tmp"  # maybe filling, elsewhere
    elsewhere.mkdir()
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"half")
    good = cached_samples(samples, SPEC, mode="disk")
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([fp, elsewhere.name])
    assert len(good) == 6


def test_unreadable_disk_cache_is_rebuilt(data, cache_dir, decodes):
    samples = discover(data).samples
    cached_samples(samples, SPEC, mode="disk")
    meta = cache_dir / fingerprint(samples, SPEC) / "meta.json"
    meta.write_text(json.dumps({"format": "other"}))
    rebuilt = cached_samples(samples, SPEC, mode="disk")
    assert len(decodes) == 12 and rebuilt.mode == "disk"
    assert json.loads(meta.read_text())["n"] == 6


# ----------------------------------------------------------------------------- none
def test_streaming_decodes_per_access_and_equals_memory(data, decodes):
    samples = discover(data).samples
    stream = cached_samples(samples, SPEC, mode="none")
    assert len(decodes) == 6 and stream.nbytes == 0  # sizes and hashes: one pass
    memory = cached_samples(samples, SPEC, mode="memory")
    decodes.clear()
    ds_stream, ds_memory = CachedDataset(stream, range(6)), CachedDataset(memory, range(6))
    for i in range(6):
        a, b = ds_stream[i], ds_memory[i]
        assert all(torch.equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))
    assert len(decodes) == 6  # image and mask of one item: one decode
    _same(stream, memory)
    assert stream.images[[]].shape == (0, 3, 32, 32)
    copied = pickle.loads(pickle.dumps(stream.images))  # worker processes get a copy
    assert torch.equal(copied[1], memory.images[1])


def test_prepare_in_each_mode_gives_the_same_rows(data, cache_dir):
    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import prepare

    got = {
        mode: prepare(load_config(overrides=[f"data.root={data}", f"data.cache={mode}", *TINY]))
        for mode in ("memory", "disk", "none")
    }
    for mode in ("disk", "none"):
        _same(got[mode].cache, got["memory"].cache)
        assert got[mode].dataset.samples == got["memory"].dataset.samples


def test_cache_setting_values():
    from medtl.configuration.loading import load_config
    from medtl.utils.errors import ConfigError

    assert load_config().data.cache == "memory" and load_config().data.cache_dir is None
    assert load_config(overrides=["data.cache=disk"]).data.cache == "disk"
    # earlier runs' config.yaml hold a boolean
    assert load_config(overrides=["data.cache=true"]).data.cache == "memory"
    assert load_config(base={"data": {"cache": False}}).data.cache == "none"
    with pytest.raises(ConfigError, match="data.cache.*memory, disk, none"):
        load_config(overrides=["data.cache=ram"])


def test_fingerprint_changes_with_mask_resize(phantoms):
    """A cache decoded with data.mask_resize=nearest is not reused without it."""
    from medtl.data.cache.decode import DecodeSpec
    from medtl.data.cache.modes import fingerprint
    from medtl.data.masks.scheme import MaskScheme

    samples = discover(phantoms).samples
    spec = DecodeSpec(size=32, with_masks=True)
    plain = fingerprint(samples, spec)
    binary = MaskScheme("binary")
    resized = fingerprint(samples, DecodeSpec(32, True, masks=binary.resized("nearest")))
    assert resized != plain  # the spec's scheme carries data.mask_resize, no global
    assert fingerprint(samples, DecodeSpec(32, True, masks=binary)) == plain
    assert fingerprint(samples, DecodeSpec(size=32, with_masks=False)) != plain
