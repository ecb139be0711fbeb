"""Lightning's step overhead in medtl: one training step built up in a ladder, one process.

Issue 22 (item 6): docs/performance.md measured a plain PyTorch loop over medtl's loader at
2.99 img/s and the same in a Lightning ``Trainer`` (MedtlTask) at 2.77 img/s (ResNet18-UNet,
256 px, batch 8, ~7%). This script splits that gap. Every variant trains the same network
(``build_task``: ``medtl._bench.worker.FAIR_DEFAULTS``, ResNet18-UNet, random weights,
contiguous layout) on the same phantoms through the same loader (``make_loader``, cached
tensors, no augmentation), after :func:`medtl.configure_cpu` (tuned allocator):

- ``a_plain``: ``task.net(x)``, ``task.compute_loss`` (medtl's loss), backward,
  ``optimizer.step()``, ``zero_grad(set_to_none=True)``; the optimiser is the task's own
  ``configure_optimizers()``;
- ``a2_lightning_order``: (a) with the gradients zeroed where Lightning's closure zeroes
  them (``zero_grad`` after the forward, before ``backward``): the last step's gradients
  are alive during each forward, as under a Trainer;
- ``b_metrics``: (a) + the in-loop training scores exactly as ``training_step`` does them
  (``MedtlTask._train_scores``: train_dice/train_iou updates), its ``self.log`` calls stubbed;
- ``c_training_step``: ``MedtlTask.training_step`` called by hand (forward, loss, the
  finiteness check, the scores); without a Trainer Lightning's ``self.log`` returns at once
  (a warning, silenced here), so this has no logging cost;
- ``d_medtl_trainer``: ``medtl train``'s own Trainer (``medtl.training.fit._trainer``) with
  ``run_callbacks`` (checkpoints, metrics.csv, steps.csv, run.json) in a temporary run
  folder, progress bar as ``medtl train`` (``--no-progress`` to drop it), inside
  ``fit_endings``; one epoch of ``warmup + steps`` batches (``train.max_steps_per_epoch``);
- ``d2_grads_kept``: (d) with Lightning's own ``optimizer_step`` instead of the task's
  (which frees the gradients after the step, since issue 22): the gradients then stay
  allocated until the next step's closure zeroes them, i.e. through the next forward;
- ``e_bench_trainer``: the Trainer ``medtl bench`` times (``medtl._bench.worker.
  bench_trainer``: no callbacks, logger, progress bar, checkpointing or model summary;
  ``self.log`` still collects);
- ``f_barebones``: the same with ``barebones=True``: Lightning's loop alone (``self.log``
  and ``log_dict`` return at once).

Plain variants are timed by ``medtl._bench.worker._timed`` (the loader fetch inside, warmup
steps excluded), Trainer variants by the bench's ``StepTimer`` callback; both count the
minor page faults of the same steps (``ru_minflt``), and the Trainer variants also report
the whole ``fit`` wall time per step (setup and epoch end included). The variants are interleaved over ``--repeats`` rounds (after one untimed run of (a):
the process's first steps grow the heap); medians are reported. Minor faults per step well
above 0 in a variant mean its window still grows the heap: use more ``--warmup``.
Then a cProfile of ``--steps`` steps of (d) and of (a): the Python functions (d) spends
time in beyond (a), as cumulative seconds per step, and self time per package. cProfile
slows Python-heavy code more than the C++ kernels, so its per-step numbers overstate the
overhead; read them for where the time goes, the timed ladder for how much.

Run it on a quiet machine only (``uptime``: 1-minute load < 1.5; the script refuses
otherwise unless ``--force``), nothing else running.

Usage:
    python benchmarks/step_overhead.py [--size 256] [--batch 8] [--steps 10] [--warmup 2]
        [--repeats 2] [--threads 0] [--no-progress] [--quick] [--force] [key=value ...]
stdout: one line per variant (img/s, ratio to a_plain), the profile, and, last, one JSON
line with every number (schema ``medtl.step_overhead/1``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import json
import logging
import os
import pstats
import re
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch

from medtl._bench.worker import FAIR_DEFAULTS, _step_timer, _timed, bench_trainer
from medtl.configuration.loading import load_config
from medtl.data.phantoms import make_phantoms
from medtl.data.pipeline import make_loader, prepare
from medtl.runs.facts import RunFacts
from medtl.runtime.cpu import configure_cpu
from medtl.runtime.quiet import quiet_lightning
from medtl.training.callbacks import run_callbacks
from medtl.training.fit import _trainer, build_task
from medtl.training.interrupts import fit_endings

VARIANTS = (
    "a_plain",
    "a2_lightning_order",
    "b_metrics",
    "c_training_step",
    "d_medtl_trainer",
    "d2_grads_kept",
    "e_bench_trainer",
    "f_barebones",
)
# the warnings these variants raise by design: self.log without a Trainer (c) or barebones (f)
EXPECTED = (
    "You are trying to `self.log()` but the `self.trainer` reference",
    "You are trying to `self.log()` but `Trainer(barebones=True)`",
    "You defined a `validation_step` but have no `val_dataloader`",
)


# --------------------------------------------------------------------------- set-up


def setup(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Phantoms (one epoch = ``warmup + steps`` batches), config, task, loader, optimiser."""
    n_steps = args.warmup + args.steps
    root = make_phantoms(tmp / "phantoms", n=args.batch * n_steps, size=args.size)
    cfg = load_config(
        None,
        [
            *FAIR_DEFAULTS,
            f"data.root={root}",
            f"data.image_size={args.size}",
            f"train.batch_size={args.batch}",
            "model.encoder=resnet18",
            "train.memory_format=contiguous",  # the same layout in every variant
            "train.epochs=1",
            f"train.max_steps_per_epoch={n_steps}",
            *args.overrides,
        ],
    )
    torch.manual_seed(cfg.train.seed)
    data = prepare(cfg)
    idx = list(range(len(data.cache)))
    task, _ = build_task(cfg, data, {"train": idx, "val": [], "test": []})
    opt = task.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    return {
        "cfg": cfg,
        "task": task,
        "loader": make_loader(data, idx, cfg, train=True),
        "opt": opt,
        "tmp": tmp,
    }


@contextmanager
def no_log(task: L.LightningModule) -> Iterator[None]:
    """``task.log`` / ``task.log_dict`` as no-ops for the block (instance attributes)."""
    task.log = task.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del task.log, task.log_dict


# --------------------------------------------------------------------------- steps


def plain_step(s: dict[str, Any], scores: bool, late: bool = False) -> Callable[[Any], None]:
    """(a); (b) with ``scores``; (a2) with ``late``: gradients zeroed where Lightning's
    closure zeroes them (after the next forward, before its backward), so the previous
    step's gradients are alive during the forward."""
    task, opt = s["task"], s["opt"]

    def step(batch: Any) -> None:
        x, mask, label, _ = batch
        out = task.net(x)
        loss = task.compute_loss(out, mask, label)["loss"]
        if scores:  # where training_step does them: after the loss, before backward
            with no_log(task):
                task._train_scores(out, mask, label)
        if late:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not late:
            opt.zero_grad(set_to_none=True)

    return step


@contextmanager
def grads_kept(task: L.LightningModule) -> Iterator[None]:
    """(d2): Lightning's own ``optimizer_step`` hook instead of ``MedtlTask``'s, which
    frees the gradients after the step: they then stay allocated through the next forward
    until Lightning's closure zeroes them (what medtl did before issue 22)."""
    task.optimizer_step = L.LightningModule.optimizer_step.__get__(task)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del task.optimizer_step


def hand_step(s: dict[str, Any]) -> Callable[[Any], None]:
    """(c): ``MedtlTask.training_step`` by hand, then backward and the optimiser."""
    task, opt = s["task"], s["opt"]

    def step(batch: Any) -> None:
        loss = task.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


class Window(L.Callback):
    """Steps ``warmup .. warmup + steps - 1`` (from the end of step ``warmup - 1`` to the end
    of the last step, as the StepTimer): minor page faults and, when given, a cProfile."""

    def __init__(self, warmup: int, steps: int, prof: cProfile.Profile | None = None) -> None:
        self.start, self.stop, self.prof = warmup, warmup + steps, prof
        self.f0, self.faults, self.done = 0, None, 0

    def mark(self, done: int) -> None:
        """``done`` steps have finished."""
        if done == self.start:
            self.f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            if self.prof is not None:
                self.prof.enable()
        elif done == self.stop:
            if self.prof is not None:
                self.prof.disable()
            self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.f0

    def counted(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """``fn`` marking each finished step (plain loops)."""

        def step(batch: Any) -> None:
            fn(batch)
            self.done += 1
            self.mark(self.done)

        return step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.mark(trainer.global_step)  # already counts this batch's optimiser step


def plain_variant(s: dict[str, Any], name: str, args: argparse.Namespace, window: Window) -> dict:
    """img/s of a plain loop (a, b, c) over ``warmup + steps`` batches."""
    task = s["task"]
    task.trainer = None  # detached from the last Trainer: self.log returns at once
    task.train()
    s["opt"].zero_grad(set_to_none=True)
    if name == "c_training_step":
        fn = hand_step(s)
    else:
        fn = plain_step(s, scores=name == "b_metrics", late=name == "a2_lightning_order")
    ips = _timed(s["loader"], args.warmup, args.steps, window.counted(fn))
    return {"img_per_s": ips, "fit_s_per_step": None}


def medtl_trainer(s: dict[str, Any], callbacks: list[L.Callback], progress: bool) -> L.Trainer:
    """``medtl train``'s Trainer and callbacks, in a fresh run folder under ``tmp``."""
    run = Path(tempfile.mkdtemp(prefix="run_", dir=s["tmp"]))
    facts = RunFacts(run)
    facts.start()
    _, _, own = run_callbacks(s["cfg"], run, facts)
    return _trainer(s["cfg"], run, [*own, *callbacks], progress)


def lightning_trainer(s: dict[str, Any], name: str, args: argparse.Namespace, callbacks: list):
    """The Trainer of variant (d), (e) or (f), with ``callbacks`` added."""
    if name in ("d_medtl_trainer", "d2_grads_kept"):
        return medtl_trainer(s, callbacks, args.progress)
    flags = {"barebones": True} if name == "f_barebones" else {}  # else (e): the bench's own
    return bench_trainer(args.warmup + args.steps, callbacks, **flags)


def lightning_fit(s: dict[str, Any], name: str, args: argparse.Namespace, window: Window) -> dict:
    """img/s (the bench's StepTimer) and fit seconds per step of a Trainer variant."""
    t0 = time.perf_counter()
    timer = _step_timer(args.warmup)
    trainer = lightning_trainer(s, name, args, [timer, window])
    kept = grads_kept(s["task"]) if name == "d2_grads_kept" else nullcontext()
    with kept, fit_endings(trainer, s["tmp"]):
        trainer.fit(s["task"], s["loader"], weights_only=True)
    fit_s = (time.perf_counter() - t0) / (args.warmup + args.steps)
    return {"img_per_s": timer.img_per_s, "fit_s_per_step": fit_s}


def run_variant(s: dict[str, Any], name: str, args: argparse.Namespace, prof=None) -> tuple:
    """``(timings, window)`` of one run of variant ``name``."""
    gc.collect()  # the last Trainer's optimiser state freed: no heap growth from that
    window = Window(args.warmup, args.steps, prof)
    fn = plain_variant if name[0] in "abc" else lightning_fit
    out = fn(s, name, args, window)
    out["minor_faults_per_step"] = None if window.faults is None else window.faults / args.steps
    return out, window


def _median(rs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rs if r[key] is not None]
    return statistics.median(values) if values else None


def measure(s: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every variant once per round, interleaved; medians over the rounds."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    run_variant(s, "a_plain", args)  # untimed: the process's first steps (heap growth) are slow
    for _ in range(args.repeats):
        for name in VARIANTS:
            runs[name].append(run_variant(s, name, args)[0])
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        out[name] = {k: _median(rs, k) for k in rs[0]}
        out[name]["runs_img_per_s"] = [round(r["img_per_s"] or 0.0, 3) for r in rs]
    base = out["a_plain"]["img_per_s"]
    for v in out.values():
        v["ratio_to_a"] = v["img_per_s"] / base if v["img_per_s"] and base else None
    return out


# --------------------------------------------------------------------------- profile


def _key(fn: Callable) -> tuple[str, int, str]:
    """cProfile's key of a Python function (its unwrapped code)."""
    code = inspect.unwrap(fn).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def _label(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    for cut in ("site-packages/", "src/"):
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{path}:{line}({name})"


def _package(path: str) -> str:
    if path == "~":
        return "C calls (torch kernels, builtins)"
    for pkg in ("lightning", "torchmetrics", "rich", "tqdm", "medtl", "torch"):
        if f"/{pkg}/" in path:
            return pkg
    return "other Python"


def _ancestors(stats: dict, anchors: set) -> set:
    """Every function that calls an anchor, directly or not (the loop's wrappers)."""
    seen: set = set()
    todo = [f for f in anchors if f in stats]
    while todo:
        for caller in stats[todo.pop()][4]:
            if caller not in seen and caller not in anchors:
                seen.add(caller)
                todo.append(caller)
    return seen


def compare(d: pstats.Stats, a: pstats.Stats, anchors: set, steps: int, top: int) -> dict:
    """What (d) does beyond (a), per step: functions (a) calls less often or never, less the
    wrappers around the shared work (``anchors``: the network's forward, the loss, backward,
    the optimiser step), by cumulative seconds beyond (a); and self time per package."""
    ds, as_ = d.stats, a.stats  # type: ignore[attr-defined]
    wrappers = _ancestors(ds, anchors)
    extra = []
    for f, (_, calls, _, cum, _) in ds.items():
        a_calls, a_cum = (as_[f][1], as_[f][3]) if f in as_ else (0, 0.0)
        if f not in wrappers and calls > a_calls and cum > a_cum:
            extra.append(((cum - a_cum) / steps, f, calls / steps, cum / steps))
    extra.sort(reverse=True)
    packages: dict[str, dict[str, float]] = {}
    for side, table in (("a", as_), ("d", ds)):
        for f, row in table.items():
            per = packages.setdefault(_package(f[0]), {"a": 0.0, "d": 0.0})
            per[side] += row[2] / steps
    return {
        "a_s_per_step": a.total_tt / steps,  # type: ignore[attr-defined]
        "d_s_per_step": d.total_tt / steps,  # type: ignore[attr-defined]
        "top_extra": [
            {"function": _label(f), "calls": round(c, 2), "d_cum_s": cum, "extra_s": more}
            for more, f, c, cum in extra[:top]
        ],
        "self_s_per_package": packages,
    }


def profile(s: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """cProfile of ``steps`` steps of (a) and of (d), compared."""
    profs = {}
    for name in ("a_plain", "d_medtl_trainer"):
        profs[name] = cProfile.Profile()
        run_variant(s, name, args, profs[name])
    task, opt = s["task"], s["opt"]
    anchors = {
        _key(type(task.net).forward),
        _key(type(task).compute_loss),
        _key(torch.autograd.backward),
        _key(type(opt).step),
    }
    a, d = (pstats.Stats(profs[k]) for k in ("a_plain", "d_medtl_trainer"))
    return compare(d, a, anchors, args.steps, args.top)


# --------------------------------------------------------------------------- output


def report(result: dict[str, Any]) -> None:
    """One line per variant, then the profile's tables."""
    for name, v in result["variants"].items():
        ips, ratio, fit = v["img_per_s"], v["ratio_to_a"], v["fit_s_per_step"]
        line = (
            f"{name:16s} {ips:8.3f} img/s  x{ratio:.3f} of a_plain" if ips else f"{name}: no timing"
        )
        if v["minor_faults_per_step"] is not None:
            line += f"  {v['minor_faults_per_step']:.0f} minor faults/step"
        if fit is not None:
            line += f"  (fit wall {fit:.3f} s/step)"
        print(line)
    p = result["profile"]
    print(
        f"cProfile, s/step (profiler on): a_plain {p['a_s_per_step']:.4f}, "
        f"d_medtl_trainer {p['d_s_per_step']:.4f}"
    )
    print("  d beyond a, cumulative s/step (calls/step) function:")
    for row in p["top_extra"]:
        print(f"  {row['extra_s']:.5f} ({row['calls']:g}) {row['function']}")
    print("  self time s/step by package: a / d")
    for pkg, row in sorted(p["self_s_per_package"].items(), key=lambda kv: -kv[1]["d"]):
        print(f"  {row['a']:.5f} / {row['d']:.5f}  {pkg}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` shrinks the run to a check that the script works."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = every core)")
    p.add_argument("--top", type=int, default=15, help="functions listed from the profile")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="(d) without bar")
    p.add_argument("--quick", action="store_true", help="32 px, 3 steps, 1 repeat: a check")
    p.add_argument("--force", action="store_true", help="measure even on a busy machine")
    p.add_argument("overrides", nargs="*", help="medtl key=value settings (e.g. train.loss=dice)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.warmup, args.repeats = 32, 3, 1, 1
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--warmup, --steps and --repeats must be >= 1 (the windows start after a step)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    load = os.getloadavg()[0]
    if load >= 1.5 and not args.force:
        print(f"1-minute load {load:.2f} >= 1.5: not measuring (--force to anyway)")
        return 2
    configure_cpu(threads=args.threads)
    logging.getLogger("medtl").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="step_overhead_") as tmp, quiet_lightning():
        for text in EXPECTED:
            warnings.filterwarnings("ignore", re.escape(text))
        s = setup(args, Path(tmp))
        result: dict[str, Any] = {"variants": measure(s, args), "profile": profile(s, args)}
    result = {
        "schema": "medtl.step_overhead/1",
        **{k: getattr(args, k) for k in ("size", "batch", "steps", "warmup", "repeats")},
        "overrides": args.overrides,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "load_at_start": load,
        "load_at_end": os.getloadavg()[0],
        **result,
    }
    report(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
