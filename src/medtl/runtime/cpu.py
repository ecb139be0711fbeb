"""CPU settings shared by training, evaluation, prediction and the benchmark:
intra-op threads (``train.threads``) and the memory allocator (``train.cpu_allocator``).

A training step allocates and frees the same large activation and gradient buffers every
step. glibc's malloc serves blocks above 128 KiB-32 MiB with fresh ``mmap`` pages and gives
them back with ``munmap`` (and trims the heap top), so every step page-faults its working
set in again (a ResNet18-UNet at 256 px: some 400,000 minor page faults a step, about a
third of the step time on 2 cores). ``tuned`` serves everything from the
heap and never trims it (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``):
the buffers are reused, the page faults disappear, and the peak RSS stays what the step
needs. It is the same as starting Python with ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1073741824``. Other C libraries (macOS, musl) are left alone.

Both are process-wide, so a library call never applies them on its own. Library calls
that honour ``train.threads`` hold that thread count only for the duration of the call
(:func:`threads_for`) and restore the caller's afterwards. The ``medtl`` command owns its
process (:func:`owning_process`): there each call also applies ``train.cpu_allocator``,
exactly as the command always did. A Python program opts in with :func:`configure_cpu`
(``medtl.configure_cpu()``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from medtl.utils.parallel import usable_cores

if TYPE_CHECKING:
    from medtl.configuration.loading import Config

log = logging.getLogger("medtl")

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False
_process_owner = False  # True inside the medtl command (owning_process)


def tune_malloc(trim_threshold: int = 1 << 30) -> bool:
    """Apply the ``tuned`` settings to this process (idempotent); False where unsupported."""
    global _applied
    if _applied:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    _applied = ok
    return ok


def thread_count(threads: int = 0) -> int:
    """``train.threads``: the given count; 0 = ``$OMP_NUM_THREADS`` when it is set to a
    positive integer (a batch system's or a test runner's share), else every core this
    process may run on."""
    if threads:
        return threads
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    return usable_cores()


def configure_cpu(threads: int | None = 0, allocator: str = "tuned") -> None:
    """Apply medtl's CPU settings to this whole process (opt-in from Python; the CLI does it).

    ``threads``: intra-op threads for every later torch call (0 = every core, None = leave
    torch's setting); ``allocator``: ``"tuned"`` applies :func:`tune_malloc` (glibc only),
    ``"default"`` leaves malloc alone. Example::

        import medtl
        medtl.configure_cpu(threads=2)  # what 'medtl train train.threads=2' does
    """
    if threads is not None:
        import torch

        torch.set_num_threads(thread_count(threads))
    if allocator == "tuned":
        tune_malloc()


def set_threads(cfg: Config) -> None:
    """The process-wide settings ``cfg`` asks for (``train.threads``, ``train.cpu_allocator``):
    :func:`configure_cpu` for a command that owns its process."""
    configure_cpu(cfg.train.threads, cfg.train.cpu_allocator)


@contextmanager
def owning_process() -> Iterator[None]:
    """Inside the block (the ``medtl`` command), :func:`threads_for` also applies each
    call's ``train.cpu_allocator`` to the process."""
    global _process_owner
    before, _process_owner = _process_owner, True
    try:
        yield
    finally:
        _process_owner = before


@contextmanager
def threads_for(cfg: Config) -> Iterator[None]:
    """``train.threads`` for the duration of one library call; the caller's count after
    (and, in the ``medtl`` command, the allocator tuning ``train.cpu_allocator`` asks for,
    when the work runs on the CPU: on a GPU the host allocator is not the bottleneck)."""
    import torch  # here, so that the CLI imports this module without torch

    from medtl.runtime.device import runs_on_cpu

    on_cpu = runs_on_cpu(cfg.train.accelerator)
    if _process_owner and cfg.train.cpu_allocator == "tuned" and on_cpu:
        tune_malloc()

    before = torch.get_num_threads()
    torch.set_num_threads(thread_count(cfg.train.threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
