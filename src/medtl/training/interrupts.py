"""How Lightning's ``fit`` ends, as medtl's errors: a NaN loss, and Ctrl-C.

Lightning catches ``KeyboardInterrupt`` inside ``fit``, tears down cleanly (the last
checkpoint is intact), ignores SIGINT from then on and calls ``sys.exit(1)``. medtl notices
it (``trainer.interrupted``), gives the caller its SIGINT handler back and raises
:class:`medtl.utils.errors.Interrupted`, which the CLI prints as "interrupted; resume with medtl
train train.resume=RUN" with exit code 130.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L

from medtl.utils.errors import Interrupted, MedtlError

__all__ = ["fit_endings"]


@contextmanager
def fit_endings(trainer: L.Trainer, run: Path) -> Iterator[None]:
    """Around ``trainer.fit``: FloatingPointError (the NaN guard) -> MedtlError, Lightning's
    Ctrl-C exit -> Interrupted(run); the SIGINT handler is the caller's again afterwards."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except FloatingPointError as exc:
        raise MedtlError(str(exc)) from None
    except SystemExit:
        if trainer.interrupted:
            raise Interrupted(run) from None
        raise
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)
