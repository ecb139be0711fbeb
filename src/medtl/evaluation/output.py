"""The ``RUN/eval/<split>`` folder of :func:`medtl.evaluation.evaluate.evaluate`, replaced as a set.

Everything an evaluation writes (per_image.csv, masks, overlays, plots, summary.json last)
goes into ``eval/.incoming/<split>``; only when it is complete does it replace
``eval/<split>`` as a whole (:func:`medtl.utils.files.swap_in`), so a kill, a full disk or a
crash midway leaves the previous results whole, never new rows beside old metrics.
The writing process holds the run folder's lock (:mod:`medtl.utils.locks`); at its start it puts
back results a killed evaluation had moved aside and deletes unfinished staging folders.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

from medtl.runs.folder import process_rank
from medtl.utils.files import STAGING, recover_folders, stage_folder
from medtl.utils.locks import folder_lock

__all__ = ["staging_folder", "writer_lock"]


def writer_lock(run: Path) -> AbstractContextManager[Any]:
    """The run folder's lock for the process that writes the results (rank 0), with the
    eval folders recovered; DDP workers (they write into rank 0's staging folder) take none."""
    if process_rank() != 0:
        return nullcontext()
    stack = ExitStack()
    stack.enter_context(folder_lock(run, "evaluation"))
    try:
        recover_folders(run / "eval")
    except BaseException:
        stack.close()
        raise
    return stack


def staging_folder(out_dir: Path, fabric: Any = None) -> Path:
    """The staging folder of ``out_dir``, made empty by rank 0 before any rank writes."""
    staging = out_dir.parent / STAGING / out_dir.name
    if fabric is None or fabric.global_rank == 0:
        stage_folder(out_dir)
    if fabric is not None:
        fabric.barrier()
    return staging
