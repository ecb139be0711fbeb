"""Decoding threads: results in input order, identical to the serial loop; progress bars
only on a terminal."""

from __future__ import annotations

import io as stdio
import sys
import time

import pytest
import torch

from medtl.data.audit.report import audit
from medtl.data.cache.decode import DecodeSpec, read_originals
from medtl.data.cache.modes import cached_samples
from medtl.data.layouts import discover
from medtl.utils import parallel


def test_imap_ordered_keeps_order_and_raises_the_first_error_in_order():
    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 4 == 0 else 0)  # later items finish first
        return i * 10

    assert list(parallel.imap_ordered(slow_first, range(20), threads=4)) == list(range(0, 200, 10))

    def failing(i: int) -> int:
        if i == 3:
            time.sleep(0.05)  # fails after 7 has failed
            raise ValueError("three")
        if i == 7:
            raise ValueError("seven")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="three"):
        for x in parallel.imap_ordered(failing, range(10), threads=4):
            got.append(x)
    assert got == [0, 1, 2]  # what the serial loop yields before its error


def test_threads_setting(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_ENV, "3")
    assert parallel.decode_threads() == 3
    monkeypatch.setenv(parallel.THREADS_ENV, "zero")
    assert 1 <= parallel.decode_threads() <= 16


def _with_threads(monkeypatch, n: int, fn):
    monkeypatch.setenv(parallel.THREADS_ENV, str(n))
    return fn()


def test_parallel_decoding_equals_serial(phantoms, monkeypatch):
    samples = discover(phantoms).samples
    spec = DecodeSpec(size=48, with_masks=True)
    serial = _with_threads(monkeypatch, 1, lambda: cached_samples(samples, spec))
    threaded = _with_threads(monkeypatch, 4, lambda: cached_samples(samples, spec))
    assert torch.equal(serial.images, threaded.images)
    assert torch.equal(serial.masks, threaded.masks)
    assert serial.sizes == threaded.sizes and serial.hashes == threaded.hashes
    rows = list(range(len(samples)))
    one = _with_threads(monkeypatch, 1, lambda: read_originals(samples, rows))
    four = _with_threads(monkeypatch, 4, lambda: read_originals(samples, rows))
    assert list(one) == list(four) == rows
    for r in rows:
        assert (one[r][0] == four[r][0]).all() and (one[r][1] == four[r][1]).all()


def test_parallel_audit_equals_serial(phantoms, monkeypatch):
    def report() -> dict:
        d = audit(phantoms).to_dict()
        d.pop("seconds")
        return d

    assert _with_threads(monkeypatch, 1, report) == _with_threads(monkeypatch, 4, report)


class _Terminal(stdio.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    items = [1, 2, 3]
    assert parallel.progress(items, 3, "x") is items  # tests run without a terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = parallel.progress(items, 3, "decoding")
    assert bar is not items and list(bar) == items
    assert "decoding" in sys.stderr.getvalue()


def test_docstring_example_runs():
    import doctest

    result = doctest.testmod(parallel)
    assert result.failed == 0 and result.attempted > 0


_FORKED_AUDIT = """
import json, os, sys
from medtl.data.audit.report import audit
from medtl.utils.parallel import fork_is_safe, imap_ordered

def pid(i):
    return i * i, os.getpid()

def fail_at_11(i):  # inside the second chunk of 8
    if i == 11:
        raise ValueError(f"item {i}")
    return i

out = list(imap_ordered(pid, range(12), threads=2, processes=True))
before, error = [], None
try:
    for v in imap_ordered(fail_at_11, range(20), threads=2, processes=True):
        before.append(v)
except ValueError as exc:
    error = str(exc)
report = audit(sys.argv[1]).to_dict()
report.pop("seconds")
children = len({p for _, p in out} - {os.getpid()})
doc = {"safe": fork_is_safe(), "values": [v for v, _ in out], "children": children}
doc |= {"before": before, "error": error}
print(json.dumps({**doc, "torch": "torch" in sys.modules, "report": report}, default=str))
"""


def test_audit_on_forked_processes_equals_serial(phantoms, tmp_path, monkeypatch):
    """Without torch in the process (``medtl audit``) the audit decodes on forked worker
    processes; the report is the serial one, an unreadable file included."""
    import json
    import shutil
    import subprocess

    data = tmp_path / "ph"
    shutil.copytree(phantoms, data)
    (data / "benign" / "benign_0001.png").write_bytes(b"not a png")  # a broken image
    env = {**__import__("os").environ, parallel.THREADS_ENV: "2"}
    got = subprocess.run(
        [sys.executable, "-c", _FORKED_AUDIT, str(data)], capture_output=True, text=True, env=env
    )
    assert got.returncode == 0, got.stderr[-2000:]
    doc = json.loads(got.stdout.strip().splitlines()[-1])
    assert doc["safe"] and not doc["torch"] and doc["children"] >= 1
    assert doc["values"] == [i * i for i in range(12)]
    assert doc["before"] == list(range(11)) and doc["error"] == "item 11"  # as the serial loop
    serial = _with_threads(monkeypatch, 1, lambda: audit(data).to_dict())
    serial.pop("seconds")
    assert doc["report"]["unreadable"] and doc["report"] == json.loads(
        json.dumps(serial, default=str)
    )


def test_cache_fill_forks_workers_with_one_torch_thread(phantoms, tmp_path, monkeypatch):
    """In a process whose torch thread pool has run (a training), the cache fill decodes
    on forked workers that each run torch on one thread (as DataLoader workers do), the
    parent keeps its threads, and rows, sizes, hashes and a broken image's error are the
    serial loop's."""
    import os
    import shutil

    from medtl.data.cache import decode
    from medtl.utils.errors import DataError

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.nn.functional.conv2d(torch.randn(4, 8, 64, 64), torch.randn(8, 8, 3, 3))
        notes = tmp_path / "workers.txt"
        real = decode.decode_item

        def noting(sample, spec):
            with open(notes, "a") as f:
                f.write(f"{os.getpid()} {torch.get_num_threads()}\n")
            return real(sample, spec)

        monkeypatch.setattr(decode, "decode_item", noting)
        samples = discover(phantoms).samples
        forked = _with_threads(monkeypatch, 2, lambda: decode.SampleCache(samples, 48, True))
        seen = [tuple(map(int, line.split())) for line in notes.read_text().splitlines()]
        assert len(seen) == len(samples)
        assert os.getpid() not in {pid for pid, _ in seen} and len({p for p, _ in seen}) >= 1
        assert {threads for _, threads in seen} == {1}
        assert torch.get_num_threads() == 2
        serial = _with_threads(monkeypatch, 1, lambda: decode.SampleCache(samples, 48, True))
        assert torch.equal(serial.images, forked.images) and serial.images.any()
        assert torch.equal(serial.masks, forked.masks)
        assert serial.sizes == forked.sizes and serial.hashes == forked.hashes

        broken = tmp_path / "ph"
        shutil.copytree(phantoms, broken)
        samples = discover(broken).samples
        samples[5].image.write_bytes(b"not an image")
        errors = []
        for n in (2, 1):
            with pytest.raises(DataError) as exc:
                _with_threads(monkeypatch, n, lambda: decode.SampleCache(samples, 48, True))
            errors.append(str(exc.value))
        assert errors[0] == errors[1] and str(samples[5].image) in errors[0]
    finally:
        torch.set_num_threads(before)


def _pool_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info()), default=1)


def test_forked_workers_run_blas_on_one_thread() -> None:
    """The workers fill the cores: a BLAS/OpenMP pool per worker would oversubscribe them."""
    pytest.importorskip("threadpoolctl")
    import numpy as np  # noqa: F401  (its OpenBLAS is one of the pools)

    assert set(parallel.imap_ordered(_pool_threads, range(4), threads=2, processes=True)) == {1}
