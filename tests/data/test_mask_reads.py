"""Each mask file is read once per training: the decode takes the pixels the mask scan read
(:mod:`medtl.data.readers.kept`). Reads are counted in a file, so that forked decoding
workers count too."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from medtl.data.audit import files as audit_files
from medtl.data.audit.report import audit
from medtl.data.cache.decode import DecodeSpec
from medtl.data.cache.modes import cached_samples, reuse_decoded
from medtl.data.layouts import discover
from medtl.data.masks.scan import mask_files, scan
from medtl.data.readers import io, kept
from tests.conftest import train_tiny


@pytest.fixture
def mask_reads(monkeypatch, tmp_path):
    """``counts(paths)``: how often :func:`medtl.data.readers.io.read_array` read each of
    ``paths`` since the last call, in this process and in forked workers (two decoding
    workers, also under pytest-xdist)."""
    log = tmp_path / "reads.txt"
    real = io.read_array

    def recording(path, *args, **kwargs):
        with open(log, "a") as f:  # one short appended line: whole, across processes
            f.write(f"{path}\n")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_array", recording)
    monkeypatch.setenv("MEDTL_DECODE_THREADS", "2")

    def counts(paths) -> Counter:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        wanted = {str(p) for p in paths}
        return Counter({p: 0 for p in wanted}) + Counter(x for x in lines if x in wanted)

    return counts


def _masks(root: Path) -> list[Path]:
    return mask_files(discover(root).samples)


@pytest.mark.slow
def test_training_reads_each_mask_once(phantoms, tmp_path, mask_reads):
    masks = _masks(phantoms)
    mask_reads(masks)
    train_tiny(phantoms, tmp_path / "runs")
    got = mask_reads(masks)
    assert len(got) == 16 and set(got.values()) == {1}, got


@pytest.mark.slow
def test_disk_cache_cold_reads_each_mask_once_warm_at_most_once(phantoms, tmp_path, mask_reads):
    masks = _masks(phantoms)
    disk = ["data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}"]
    mask_reads(masks)
    train_tiny(phantoms, tmp_path / "a", *disk)
    assert set(mask_reads(masks).values()) == {1}
    run = train_tiny(phantoms, tmp_path / "b", *disk)  # warm: nothing decoded, the scan reads
    assert set(mask_reads(masks).values()) <= {0, 1} and (run / "model.pt").is_file()


def test_decode_takes_the_scanned_pixels_inside_a_block_only(phantoms, mask_reads):
    samples = discover(phantoms).samples
    masks = mask_files(samples)
    spec = DecodeSpec(size=32, with_masks=True)
    with reuse_decoded():
        scan(masks)
        scan(masks)  # the facts are remembered: no second read
        inside = cached_samples(samples, spec)
        assert set(mask_reads(masks).values()) == {1}
    assert not kept.active() and kept.take(masks[0]) is None  # released with the block
    scan(masks)
    outside = cached_samples(samples, spec)  # nothing kept: the decode reads again
    assert set(mask_reads(masks).values()) == {2}
    assert torch.equal(inside.masks, outside.masks)


def test_pixels_beyond_the_limit_are_read_again(phantoms, mask_reads, monkeypatch):
    samples = discover(phantoms).samples
    masks = mask_files(samples)
    monkeypatch.setattr(kept, "LIMIT_MB", 3 * 32 * 32 / 8 / 2**20)  # three 32 px binary masks
    with reuse_decoded():
        scan(masks)
        cache = cached_samples(samples, DecodeSpec(size=32, with_masks=True))
    got = mask_reads(masks)
    assert sorted(got.values()) == [1] * 3 + [2] * 13
    plain = cached_samples(samples, DecodeSpec(size=32, with_masks=True))
    assert torch.equal(cache.masks, plain.masks)


def test_audit_label_table_reads_no_mask_again(label_phantoms, mask_reads, monkeypatch):
    monkeypatch.setattr(audit_files, "read_array", io.read_array)  # its own name: recorded too
    masks = _masks(label_phantoms)
    mask_reads(masks)
    r = audit(label_phantoms)
    assert [row["n_images"] > 0 for row in r.label_table] == [True] * 3
    # the audit's file checks (the mask scan takes their facts), then the label table
    assert set(mask_reads(masks).values()) == {2}


def test_audit_reads_each_binary_mask_once(phantoms, mask_reads, monkeypatch, tmp_path):
    """The mask scan takes the facts the audit's file checks found; a file changed since is
    read again."""
    from medtl.data.masks import scan as scan_module

    monkeypatch.setattr(audit_files, "read_array", io.read_array)
    masks = _masks(phantoms)
    mask_reads(masks)
    audit(phantoms)
    assert set(mask_reads(masks).values()) == {1}
    copies = [tmp_path / f"m{k}.png" for k in range(2)]
    for src, dst in zip(masks, copies, strict=False):
        dst.write_bytes(src.read_bytes())
    scan_module.remember(scan(copies))
    mask_reads(copies)
    copies[0].write_bytes(copies[0].read_bytes() + b"\0")  # one more byte: another size
    assert [f.values for f in scan(copies)] == [f.values for f in scan_module.scan(copies)]
    assert mask_reads(copies) == Counter({str(copies[0]): 2, str(copies[1]): 1})


@pytest.mark.parametrize(
    "arr",
    [
        np.array([[0, 255], [255, 0]], np.uint8),
        np.array([[0, 1, 1]], bool),
        np.array([[7, 1000, 7]], np.uint16),
        np.zeros((3, 5), np.uint8),
        np.array([[0, 1, 2]], np.uint8),  # three values: kept as they are
        np.zeros((2, 2, 3), np.uint8),
    ],
)
def test_kept_pixels_come_back_as_read(arr, tmp_path):
    with kept.keeping():
        kept.keep(tmp_path / "m.png", arr, facts="f")
        assert kept.facts(tmp_path / "m.png") == "f"
        got = kept.take(tmp_path / "m.png")
        assert got.dtype == arr.dtype and got.shape == arr.shape and (got == arr).all()
        assert kept.take(tmp_path / "m.png") is None  # handed over once
    assert kept.facts(tmp_path / "m.png") is None
