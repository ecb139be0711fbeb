"""``pytest --cpu-durations=FILE``: CPU seconds per test, for finding where the suite's time
goes on a machine other jobs share (wall-clock durations there are inflated and noisy).

Each test's setup, call and teardown are timed by ``getrusage`` of this process plus its
waited-for children (user + system), so fixtures are charged to the first test that builds
them and subprocesses count. One tab-separated line per test goes to FILE: node id, setup,
call, teardown, total CPU seconds and the process's own ``time.process_time`` share; the
collection's CPU seconds go on a ``<collection>`` line, the whole session's on ``<session>``
(a pytest-xdist worker's lines name it, ``<session gw0>``; the controller's session includes
its workers, which are its children).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-durations",
        metavar="FILE",
        default=None,
        help="write CPU seconds (self + children) per test phase to FILE (tab-separated)",
    )


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class CpuDurations:
    """Collects the CPU seconds of each test phase; a line goes to the file as each test ends
    (pytest-xdist workers append to the one file the controller emptied)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.who = f" {worker}" if worker else ""
        if not worker:
            path.write_text("")
        self.rows: dict[str, dict[str, float]] = {}
        self.start = _cpu()
        self.collected = 0.0

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection(self, session):
        before = _cpu()
        yield
        self.collected = _cpu() - before
        self._write(f"<collection{self.who}>", {"total": self.collected})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        before, own = _cpu(), time.process_time()
        yield
        row = self.rows.setdefault(item.nodeid, {})
        row["total"] = _cpu() - before
        row["own"] = time.process_time() - own
        self._write(item.nodeid, row)

    def _write(self, name: str, row: dict[str, float]) -> None:
        keys = ("setup", "call", "teardown", "total", "own")
        with self.path.open("a") as out:  # line by line: a cut-short run keeps its lines
            out.write("\t".join([name, *(f"{row.get(k, 0.0):.2f}" for k in keys)]) + "\n")

    def _phase(self, item, name: str):
        before = _cpu()
        yield
        self.rows.setdefault(item.nodeid, {})[name] = _cpu() - before

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        yield from self._phase(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        yield from self._phase(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item):
        yield from self._phase(item, "teardown")

    def pytest_sessionfinish(self, session):
        self._write(f"<session{self.who}>", {"total": _cpu() - self.start})


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--cpu-durations", default=None)
    if path:
        config.pluginmanager.register(CpuDurations(Path(path)), "cpu-durations")
