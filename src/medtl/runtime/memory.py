"""Peak memory of this process: what a plan predicts and ``run.json``'s ``plan_check`` and
``medtl bench`` report."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of /proc/self/status on Linux
    (the process image's own peak; ``ru_maxrss`` survives ``execve`` and can hold the
    parent's size at the fork), else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            hwm = [line for line in f if line.startswith("VmHWM:")]
        if hwm:
            return round(int(hwm[0].split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def peak_memory_mb(device_type: str) -> float:
    """The peak a run on ``device_type`` is limited by: CUDA memory allocated by torch on
    the current GPU, else this process's peak resident memory (:func:`peak_rss_mb`)."""
    if device_type == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak_rss_mb()
