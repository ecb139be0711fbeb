"""Fixtures of the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_onnx_thread(one_thread):
    """:func:`tests.conftest.one_thread` for ONNX Runtime sessions too
    (``medtl.exporting.runtime.THREADS``), restored afterwards."""
    from medtl.exporting import runtime

    runtime.THREADS, before = 1, runtime.THREADS
    yield
    runtime.THREADS = before
