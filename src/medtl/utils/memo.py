"""A memo that holds its entries only inside ``with memo.scope():`` blocks.

One piece serves the decoded data sets of :func:`medtl.data.cache.modes.reuse_decoded` and the
built networks of :func:`medtl.runs.folder.reuse_bundles`: nested blocks join the outermost one,
and the entries are dropped when it ends, so nothing stays in memory after the work that
asked for reuse (a comparison, one fold's evaluations).

Example::

    >>> memo = ScopedMemo()
    >>> with memo.scope():
    ...     memo["a"] = 1
    ...     with memo.scope():
    ...         memo.active, memo["a"]
    (True, 1)
    >>> memo.active, len(memo)
    (False, 0)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ScopedMemo"]


class ScopedMemo(OrderedDict[Any, Any]):
    """An ordered dict whose entries live until the outermost :meth:`scope` ends; callers
    store only while :attr:`active` (outside a block nothing would drop them)."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    @property
    def active(self) -> bool:
        """Whether a :meth:`scope` block is open."""
        return self._depth > 0

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Keep entries for the duration of this block (nested blocks join the outer one)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self.clear()
