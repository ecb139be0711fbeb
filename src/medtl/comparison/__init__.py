"""``compare``: a grid of configurations x folds trained on identical splits (a paired
design), then one results table with bootstrap CIs and paired tests against the best.

Layout of a comparison folder::

    OUT/compare.json                      the design: grid, base overrides, folds, seed, splits
    OUT/cells/<cell_id>/fold<k>/          one run folder per configuration and fold
    OUT/cells/<cell_id>/fold<k>/timing.json   inference throughput measured after training
    OUT/results.{json,csv,md}             written by :func:`collect`

Every cell trains on the same folds (grouped, stratified k-fold of the samples with
``data.seed``; without folds, one seeded train/val/test split), so scores are paired by image
and by fold. Cells can be spread over machines with ``shard=(i, n)`` and merged with
:func:`collect`; same seeds give the same table either way.

Modules: :mod:`~medtl.comparison.grid` (sweeps and cells), :mod:`~medtl.comparison.design`
(folds and ``compare.json``), :mod:`~medtl.comparison.runner` (training the cells),
:mod:`~medtl.comparison.throughput`, :mod:`~medtl.comparison.collect` (statistics per
configuration) and :mod:`~medtl.comparison.tables` (the shared results table).

Example::

    from medtl.comparison import compare
    compare(["data.root=phantoms", "train.epochs=5"], ["model.strategy=frozen,finetune"],
            folds=5, out=Path("cmp"))
"""

from __future__ import annotations

from medtl.comparison.collect import collect
from medtl.comparison.design import read_design, run_finished
from medtl.comparison.grid import cell_id, cell_label, expand_grid, split_overrides
from medtl.comparison.runner import compare
from medtl.comparison.tables import (
    METRIC_NAMES,
    fmt,
    fmt_p,
    fmt_p_holm,
    fmt_stat,
    results_csv,
    results_markdown,
    shown_metrics,
    table_rows,
)

__all__ = [
    "METRIC_NAMES",
    "cell_id",
    "cell_label",
    "collect",
    "compare",
    "expand_grid",
    "fmt",
    "fmt_p",
    "fmt_p_holm",
    "fmt_stat",
    "read_design",
    "results_csv",
    "results_markdown",
    "run_finished",
    "shown_metrics",
    "split_overrides",
    "table_rows",
]
