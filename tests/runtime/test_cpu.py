"""train.cpu_allocator=tuned: freed step buffers are reused instead of page-faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from medtl.configuration.loading import load_config
from medtl.runtime.cpu import set_threads
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for mode in sys.argv[1:]:
    set_threads(load_config(overrides=["train.cpu_allocator=" + mode, "train.threads=1"]))
    for _ in range(20):  # warm-up: the heap grows to the working set once
        x = torch.ones(8 << 20)  # 32 MiB
        del x
    f0 = faults()
    for _ in range(20):  # what a training step does with its activations
        x = torch.ones(8 << 20)
        del x
    print(mode, faults() - f0)
"""


def _faults(*modes: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modes], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line.split() for line in out.stdout.strip().splitlines()[-len(modes) :]]
    return {mode: int(n) for mode, n in lines}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_stops_per_step_page_faults():
    # one process that starts with glibc's defaults, measured with them first and then tuned
    # (the tuning cannot be undone in a process, so "default" must come first)
    faults = _faults("default", "tuned")
    # 20 x 32 MiB = 160k pages faulted in again by default; reused when tuned
    assert faults["default"] > 100_000
    assert faults["tuned"] < 1_000


def test_threads_0_takes_omp_num_threads_else_the_usable_cores(monkeypatch):
    from medtl.runtime.cpu import thread_count
    from medtl.utils.parallel import usable_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count(0) == 3 and thread_count(2) == 2
    for unset in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert thread_count(0) == usable_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_count(0) == usable_cores() >= 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert thread_count(0) == 1  # a container's or batch job's share, not the machine's
