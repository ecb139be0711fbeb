"""Decoding in parallel, in order, and progress bars that only a terminal sees.

PNG/JPEG decoding (Pillow), resizing (torch, Pillow) and hashing (hashlib, numpy) release
the GIL for most of their work, so a thread pool sized to the cores decodes that many
images at once without copying any array between processes. Not all of it: Pillow reads a
file in a Python loop and numpy's small operations hold the GIL, so on 2 cores two threads
decode JPEGs only about 1.5x as fast as one, two forked processes nearly 2x (400 images of
~600x500). ``processes=True`` (the audit, the cache fill) takes forked
processes where that is safe: see :func:`fork_is_safe`. :func:`imap_ordered` yields the
results in the order of its inputs and stops at the first failing input *in that order*,
so a parallel pass returns and raises exactly what the serial loop would.

Example::

    >>> list(imap_ordered(lambda x: x * x, range(5), threads=2))
    [0, 1, 4, 9, 16]
    >>> list(imap_ordered(str, [1, 2], threads=1))  # one thread: a plain loop, no pool
    ['1', '2']
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREADS_ENV = "MEDTL_DECODE_THREADS"
"""Environment variable that sets the number of decoding threads (default: the cores)."""


def decode_threads() -> int:
    """Threads for decoding: ``$MEDTL_DECODE_THREADS`` when set, else the cores this process
    may run on (at most 16: beyond that the disk, not the CPU, is the limit)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    return min(usable_cores(), 16)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or a batch job's
    share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def fork_is_safe() -> bool:
    """Whether worker processes may be forked from this one: on Linux (elsewhere the start
    method would be spawn or forkserver, which re-import ``__main__``). Forked workers need
    no re-import, so a user's script without a ``__main__`` guard is safe too.

    With torch imported, a forked worker starts with one torch thread
    (:func:`_worker_start`), as torch's own DataLoader workers do: the parent's OpenMP
    and intra-op thread pools do not survive a fork, and a child that enters a parallel
    region of an inherited pool can hang. With one thread torch runs every operation
    inline. Workers never touch CUDA; what they return is pickled to the parent.
    """
    return sys.platform.startswith("linux")


def _worker_start() -> None:
    """First thing in a forked worker: one thread for torch (see :func:`fork_is_safe`) and
    for the BLAS/OpenMP pools numpy and scipy link (threadpoolctl, when installed), and
    Ctrl-C left to the parent, which stops the pool (a worker that took SIGINT itself
    would die mid-task and print its own traceback). The workers already fill the cores;
    a BLAS pool per worker would only oversubscribe them (its threads spin while they
    wait, which made one matrix product per image in the audit's workers cost more than
    twice the whole audit). OpenCV's pool is not touched here: ``cv2.setNumThreads`` in a
    child forked after the parent's pool ran hung; the parent sets it instead, see
    :func:`medtl.data.duplicates.links.find_links`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional helper: without it the pools keep their size
        return
    threadpool_limits(1)


CHUNK = 8
"""Items a worker process takes per task (one inter-process round trip each): auditing
1000 JPEGs on 2 processes, chunks of 8 beat one item per task and chunks of 16 (about 10%
faster, median of 4 interleaved runs)."""


def imap_ordered(
    fn: Callable[[T], R], items: Iterable[T], threads: int | None = None, processes: bool = False
) -> Iterator[R]:
    """``fn(item)`` for every item, computed on ``threads`` threads, yielded in input order.

    ``processes=True``: on as many forked worker processes instead, when
    :func:`fork_is_safe` (else threads), :data:`CHUNK` items per task; ``fn``, the items,
    the results and ``fn``'s exceptions must pickle (return numpy arrays, not tensors:
    torch pickles a tensor between processes through shared memory, a file descriptor
    each). At most ``4 x threads`` tasks wait
    ahead of the consumer (memory stays bounded for 100,000 images). An exception of ``fn``
    is raised for the first failing item in input order, after the items before it were
    yielded; the items not started yet are dropped.
    """
    threads = decode_threads() if threads is None else max(1, threads)
    if threads == 1:
        yield from map(fn, items)
        return
    forked = processes and fork_is_safe()
    pool: Executor = (
        ProcessPoolExecutor(threads, mp_context=get_context("fork"), initializer=_worker_start)
        if forked
        else ThreadPoolExecutor(threads, thread_name_prefix="medtl-decode")
    )
    run = functools.partial(_each, fn)
    pending: deque[Future] = deque()
    with pool:
        try:
            for task in _chunks(items, CHUNK if forked else 1):
                pending.append(pool.submit(run, task))
                if len(pending) >= 4 * threads:
                    yield from _unpack(pending.popleft().result())
            while pending:
                yield from _unpack(pending.popleft().result())
        finally:
            for f in pending:  # an error or a consumer that stopped early
                f.cancel()


def _chunks(items: Iterable[T], n: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _each(fn: Callable[[T], R], task: list[T]) -> list[tuple[bool, Any]]:
    """``(True, fn(item))`` for the items of ``task`` up to the first that raises, which
    ends the list as ``(False, exception)``."""
    out: list[tuple[bool, Any]] = []
    for item in task:
        try:
            out.append((True, fn(item)))
        except Exception as exc:
            out.append((False, exc))
            break
    return out


def _unpack(results: list[tuple[bool, Any]]) -> Iterator[Any]:
    for ok, value in results:
        if not ok:
            raise value
        yield value


def map_ordered(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """:func:`imap_ordered` as a list."""
    return list(imap_ordered(fn, items, threads))


def single_flight(fn: Callable[..., R]) -> Callable[..., R]:
    """Decorator for an ``lru_cache``'d loader: concurrent calls with the same arguments
    run one at a time, so threads decoding slices of one volume (or frames of one DICOM)
    wait for the first load and take it from the cache instead of each loading the file."""
    stripes = [threading.Lock() for _ in range(64)]

    @functools.wraps(fn)
    def wrapper(*args: Any) -> R:
        with stripes[hash(args) % len(stripes)]:
            return fn(*args)

    return wrapper


def show_progress() -> bool:
    """Progress bars are drawn only when stderr is a terminal (never in logs, pipes, CI)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """``iterable`` with a tqdm bar on stderr when it is a terminal; else ``iterable`` itself."""
    if not show_progress():
        return iterable
    from tqdm import tqdm

    bar: Any = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return bar
