"""Quiet Lightning for the duration of one medtl call, and only then.

Lightning warns about things medtl does on purpose (few DataLoader workers on a 2-core
CPU, frozen encoders in eval mode, short epochs). :func:`quiet_lightning` silences those
inside a ``with`` block: the warning filters and the Lightning loggers' levels are restored
when the block ends, so importing or calling medtl changes no process-wide state.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
IGNORED = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*is deprecated.*",
    ".*module\\(s\\) in eval mode.*",  # frozen encoders, on purpose
)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Inside the block: Lightning's loggers at WARNING and its expected warnings ignored."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for pattern in IGNORED:
            warnings.filterwarnings("ignore", pattern)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
