"""``medtl bench``: medtl's training/inference throughput and memory vs the naive loop.

One invocation runs, back to back on the same data and machine, for each encoder's U-Net:

- the reference naive loop (``naive_baseline.py``: PIL decode every step, plain PyTorch, no
  Lightning; its path from ``--naive PATH``, see :func:`locate_naive`), fine-tuned and
  ``--frozen``, in a subprocess;
- medtl's own pipeline measured the same way (``warmup`` untimed + ``steps`` timed
  batches, images/s) by :func:`medtl._bench.worker.medtl_worker`, in its own subprocess too;
  inference runs :class:`medtl.inference.engine.InferenceNet`, the network ``medtl evaluate`` and
  ``predict`` run, next to the eager one for reference;
- the train DataLoader alone (after the cache is built) -> ``loader_vs_train``;
- FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``; forward, and forward +
  backward for training) and a practical peak measured in each worker (the best of a
  1024 and a 2048 matmul and a 3x3 convolution, :func:`medtl._bench.measure.peak_gflops`)
  -> model FLOP utilisation (``train_mfu``, ``infer_mfu``); the JSON's ``matmul_gflops``
  is the parent's peak by the same probe.

The last line printed is one JSON object (:func:`summarise`). Speed claims are ratios
against the naive loop measured in the same run; absolute img/s depend on the machine.

Modules: :mod:`~medtl._bench.naive` (the naive script: where, how to call it),
:mod:`~medtl._bench.measure` (ratios, medians, FLOPs, MFU), :mod:`~medtl._bench.summary`
(the JSON object and its table), :mod:`~medtl._bench.worker` (medtl's measurement),
:mod:`~medtl._bench.runner` (:func:`run_bench`, :func:`size_scaling`).

Example::

    from medtl._bench import run_bench
    result = run_bench([], "naive_baseline.py", encoders=("resnet18",), size=64, steps=3)
    result["train_speedup"]  # medtl img/s / naive img/s, fine-tuning ResNet18-UNet
"""

from __future__ import annotations

from medtl._bench.measure import (
    epoch_seconds,
    matmul_gflops,
    median_merge,
    mfu,
    peak_gflops,
    ratio,
)
from medtl._bench.naive import NAIVE_ENV, last_json_line, locate_naive, naive_command
from medtl._bench.runner import QUICK, cli_settings, run_bench, run_medtl, size_scaling
from medtl._bench.summary import (
    REFERENCE_ENCODER,
    SCHEMA,
    STRATEGIES,
    format_table,
    summarise,
    table_rows,
)
from medtl._bench.worker import FAIR_DEFAULTS, main, medtl_worker
from medtl.runtime.flops import count_flops

__all__ = [
    "FAIR_DEFAULTS",
    "NAIVE_ENV",
    "QUICK",
    "REFERENCE_ENCODER",
    "SCHEMA",
    "STRATEGIES",
    "cli_settings",
    "count_flops",
    "epoch_seconds",
    "format_table",
    "last_json_line",
    "locate_naive",
    "main",
    "matmul_gflops",
    "peak_gflops",
    "median_merge",
    "medtl_worker",
    "mfu",
    "naive_command",
    "ratio",
    "run_bench",
    "run_medtl",
    "size_scaling",
    "summarise",
    "table_rows",
]
