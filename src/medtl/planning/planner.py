"""``medtl plan DATA``: a recipe fitted to the data and to this machine within a time budget.

1. :func:`~medtl.planning.fingerprint.fingerprint` audits the data once;
2. the image size follows from the smallest objects (:func:`~medtl.planning.choices.image_size`);
3. :func:`~medtl.planning.probe.measure` times candidate encoders (those with weights on
   disk, preferred first) at that size on the device medtl will use;
4. the first candidate that trains enough epochs within the budget wins; epochs, folds,
   loss, augmentation, strategy and early stopping follow (:mod:`medtl.planning.choices`);
5. while the budget still trains :data:`~medtl.planning.choices.GOOD_EPOCHS` epochs one
   size up (timed there, not extrapolated), the images grow (:func:`_grow`): larger images
   keep more of every boundary, up to the images' own size;
6. :mod:`medtl.planning.recipe` writes it as a config with the reasons as comments.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtl.configuration.loading import load_config
from medtl.data.audit.keys import audit_data_config, override_key
from medtl.data.class_filter import class_list
from medtl.planning import choices as rules
from medtl.planning.choices import Choice
from medtl.planning.fingerprint import Fingerprint, fingerprint
from medtl.planning.probe import Measure, measure
from medtl.runtime.cpu import threads_for
from medtl.runtime.device import format_duration, parse_duration, resolve_device
from medtl.utils.errors import ConfigError, DataError

log = logging.getLogger("medtl")
TASKS = ("segmentation", "classification", "multitask")


@dataclass
class Plan:
    """A recipe (``keys``: config key -> :class:`Choice`) and what it predicts."""

    data: str
    task: str
    budget_s: float
    device: str
    fingerprint: Fingerprint
    keys: dict[str, Choice]
    probes: list[Measure]
    folds: int
    folds_reason: str
    run_fit_s: float  # predicted trainer.fit seconds of one run
    total_s: float  # predicted wall time of the whole plan (every fold, decode, evaluation)
    peak_mb: float
    notes: list[str] = field(default_factory=list)

    def value(self, key: str) -> Any:
        """The chosen value of a config key."""
        return self.keys[key].value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the keys' values and reasons, the prediction, the probes."""
        return {
            "data": self.data,
            "task": self.task,
            "budget_s": self.budget_s,
            "device": self.device,
            "folds": self.folds,
            "folds_reason": self.folds_reason,
            "predicted_fit_s_per_run": round(self.run_fit_s, 1),
            "predicted_total_s": round(self.total_s, 1),
            "predicted_peak_mb": round(self.peak_mb, 1),
            "keys": {k: {"value": c.value, "reason": c.reason} for k, c in self.keys.items()},
            "probes": [m.to_dict() for m in self.probes],
            "fingerprint": self.fingerprint.to_dict(),
            "notes": self.notes,
        }


def _split_sizes(n: int, folds: int) -> tuple[int, int]:
    """(train, val) images of one run: K-fold inside a 20% test hold-out, or 60/20/20."""
    if folds >= 2:
        pool = n - round(0.2 * n)
        return pool - pool // folds, pool // folds
    return n - 2 * round(0.2 * n), round(0.2 * n)


def _check_inputs(fp: Fingerprint, task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"--task {task}: choose one of {', '.join(TASKS)}")
    if task != "classification" and not fp.has_masks:
        raise DataError(
            f"{fp.root}: no masks found, so no {task} plan; add masks (IMAGE_mask.png beside "
            "each image) or plan with --task classification"
        )
    if task != "segmentation" and len(fp.classes) < 2:
        raise DataError(
            f"{fp.root}: {task} needs at least 2 classes (class folders), found {len(fp.classes)}"
        )


def make_plan(
    data: str | Path,
    task: str = "segmentation",
    budget: str | float = "30m",
    folds: int | None = None,
    device: str = "auto",
    layout: str = "auto",
    steps: int = 3,
    threads: int = 0,
    overrides: list[str] | None = None,
) -> Plan:
    """The plan for ``data`` (see the module docstring); the probe computes on ``threads``
    (``train.threads``: 0 = ``$OMP_NUM_THREADS`` or every core, as training will).
    ``overrides``: ``key=value`` of the keys that change how the data is read
    (:data:`~medtl.data.audit.keys.AUDIT_KEYS`, e.g. ``data.classes=[benign,malignant]``):
    the plan is made on the data as they read it and the recipe carries them. Raises
    ConfigError (budget too small for one epoch, naming the smallest that fits; a bad
    value or key) or DataError (no masks for a segmentation plan, unreadable data)."""
    seconds = parse_duration(budget)
    if seconds is None:
        raise ConfigError("--budget: give a time budget, e.g. --budget 30m")
    budget_s = seconds.total_seconds()
    where = resolve_device(device)
    reading = audit_data_config(list(overrides), "medtl plan") if overrides else None
    fp = fingerprint(data, layout, reading)
    _check_inputs(fp, task)
    if folds is not None and folds == 1 or (folds or 0) < 0:
        raise ConfigError(f"--folds {folds}: give 0 (one split) or K >= 2")
    size = rules.image_size(fp, task)
    augment = rules.augment(_split_sizes(fp.n_images, 0)[0]).value  # what the loader will run
    cfg = load_config(
        overrides=[
            f"task={task}",
            f"train.accelerator={where.type}",
            f"train.threads={threads}",
            f"data.augment={augment}",
        ]
    )
    n_classes = len(fp.classes) if task != "segmentation" else 0
    on_disk = rules.encoders_on_disk()
    candidates = on_disk[:3] or ["resnet18"]
    batch = 16 if where.type == "cuda" else 8
    probes: list[Measure] = []
    with threads_for(cfg):
        for enc in candidates:
            log.info(f"plan: timing {enc} at {size.value} px, batch {batch} on {where.type}")
            probes.append(measure(cfg, enc, int(size.value), batch, where, n_classes, steps))
        plan = _decide(fp, task, budget_s, where.type, size, probes, folds, bool(on_disk))

        def timed(s: int) -> Measure:
            enc = str(plan.value("model.encoder"))
            log.info(f"plan: timing {enc} at {s} px, batch {batch} on {where.type}")
            return measure(cfg, enc, s, batch, where, n_classes, steps)

        plan = _grow(plan, fp, timed, bool(on_disk))
    plan.keys = _with_given(plan.keys, reading, overrides or [], layout)
    return plan


def _with_given(
    keys: dict[str, Choice], reading: Any, overrides: list[str], layout: str = "auto"
) -> dict[str, Choice]:
    """The plan's keys with the reading keys given on the command line (``--layout`` and
    ``key=value``; ``data.classes`` as a plain list of names) after ``data.root``, so the
    recipe reads the data as planned."""
    given: dict[str, Choice] = {}
    if layout != "auto":
        given["data.layout"] = Choice(layout, "as given (--layout): the data as planned")
    for item in overrides:
        key = override_key(item)
        value = getattr(reading, key.split(".", 1)[1])
        if key == "data.classes":
            value = ",".join(class_list(str(value)))
        given[key] = Choice(value, f"as given (medtl plan ... {item}): the data as planned")
    out: dict[str, Choice] = {}
    for key, choice in keys.items():
        out[key] = choice
        if key == "data.root":
            out.update(given)
    return out


def _grow(plan: Plan, fp: Fingerprint, timed: Any, pretrained: bool) -> Plan:
    """``plan`` at the largest size above its own that still trains
    :data:`~medtl.planning.choices.GOOD_EPOCHS` epochs per run with the same encoder and
    folds. Each size up is timed (``timed(size) -> Measure``) only while the last timing,
    scaled by the pixels (an over-estimate: fixed costs do not grow), leaves that many
    epochs within a third; the first that falls short stops the growth."""
    if plan.task == "classification" or int(plan.value("train.epochs")) < rules.GOOD_EPOCHS:
        return plan
    base = int(plan.value("data.image_size"))
    best, last = plan, next(m for m in plan.probes if m.encoder == plan.value("model.encoder"))
    for s in rules.larger_sizes(base, min(fp.native_size)):
        if int(best.value("train.epochs")) * (last.size / s) ** 2 < rules.GOOD_EPOCHS * 2 / 3:
            break  # out of reach even if the time grew by less than the pixels
        m = timed(s)
        size = Choice(s, rules.grown_size_reason(plan.keys["data.image_size"], s))
        try:
            bigger = _decide(
                fp, plan.task, plan.budget_s, plan.device, size, [m], plan.folds, pretrained
            )
        except ConfigError:
            break
        if int(bigger.value("train.epochs")) < rules.GOOD_EPOCHS:
            break
        bigger.probes = [*plan.probes, *best.probes[len(plan.probes) :], m]
        bigger.folds_reason = plan.folds_reason
        best, last = bigger, m
    if best is not plan:
        best.keys["model.encoder"] = plan.keys["model.encoder"]
    return best


def _decide(
    fp: Fingerprint,
    task: str,
    budget_s: float,
    device: str,
    size: Choice,
    probes: list[Measure],
    folds_asked: int | None,
    pretrained: bool,
) -> Plan:
    """The encoder, folds and epochs that fit ``budget_s``, then the other keys."""
    fixed = fp.n_images * 0.005  # decoding and evaluation per image, beyond fitting (seconds)

    def per_run(k: int) -> float:
        return (budget_s * (1 - rules.RESERVE) - fixed) / max(k, 1)

    def epochs_for(m: Measure, k: int) -> tuple[int, float, float]:
        n_train, n_val = _split_sizes(fp.n_images, k)
        epoch = rules.epoch_seconds(m, n_train, n_val, m.batch)
        fit = per_run(k) - rules.fit_overhead(m)
        return int(fit // epoch), epoch, rules.fit_overhead(m)

    fastest = min(probes, key=lambda m: m.step_s)
    fits_five = epochs_for(fastest, 5)[0] >= rules.MIN_EPOCHS
    folds = rules.folds(fp, folds_asked, fits_five)
    k = int(folds.value)  # type: ignore[call-overload]
    n_runs = max(k, 1)
    chosen = next((m for m in probes if epochs_for(m, k)[0] >= rules.MIN_EPOCHS), fastest)
    n_epochs, epoch_s, overhead = epochs_for(chosen, k)
    if n_epochs < 1:
        need = ((epoch_s + overhead) * n_runs + fixed) / (1 - rules.RESERVE)
        need = math.ceil(need / 60) * 60 if need > 60 else math.ceil(need)  # says it exactly
        raise ConfigError(
            f"--budget {format_duration(budget_s)} is too small for one epoch of {fp.root} "
            f"({n_runs} run(s), one epoch {epoch_s:.1f}s with {chosen.encoder} at {chosen.size} px "
            f"on {device}); the smallest budget that fits: {format_duration(need)}"
        )
    n_epochs = min(n_epochs, rules.MAX_EPOCHS)
    n_train, n_val = _split_sizes(fp.n_images, k)
    keys = _keys(fp, task, size, chosen, probes, n_epochs, n_train, folds, pretrained, budget_s)
    run_fit = overhead + n_epochs * epoch_s
    cache_mb = fp.n_images * chosen.size**2 * 4 / 2**20  # decoded images + masks in memory
    peak = chosen.peak_mb + (cache_mb if device == "cpu" else 0.0)
    return Plan(
        data=fp.root,
        task=task,
        budget_s=budget_s,
        device=device,
        fingerprint=fp,
        keys=keys,
        probes=probes,
        folds=k,
        folds_reason=folds.reason,
        run_fit_s=run_fit,
        total_s=run_fit * n_runs + fixed,
        peak_mb=peak,
        notes=_notes(fp, task, pretrained),
    )


def _notes(fp: Fingerprint, task: str, pretrained: bool) -> list[str]:
    """What the plan tells its user beyond the keys: missing weights, classes without objects."""
    notes = [] if pretrained else [f"no encoder weights on disk: {rules.missing_weights_hint()}"]
    if task == "segmentation":
        notes += rules.empty_class_notes(fp)
    return notes


def _keys(
    fp: Fingerprint,
    task: str,
    size: Choice,
    m: Measure,
    probes: list[Measure],
    epochs: int,
    n_train: int,
    folds: Choice,
    pretrained: bool,
    budget_s: float,
) -> dict[str, Choice]:
    speeds = ", ".join(f"{p.encoder} {p.batch / p.step_s:.1f} img/s" for p in probes)
    k = max(int(folds.value), 1)  # type: ignore[call-overload]
    per_run = budget_s / k
    strategy = rules.strategy(fp.n_images, pretrained, epochs)
    keys = {
        "task": Choice(task, "as asked (--task)"),
        "data.root": Choice(str(Path(fp.root).resolve()), "the planned data"),
        "data.image_size": size,
        "data.augment": rules.augment(n_train),
        "model.encoder": rules.encoder(m.encoder, speeds, pretrained),
        "model.weights": Choice(
            "imagenet" if pretrained else "none",
            "ImageNet weights found on disk" if pretrained else rules.missing_weights_hint(),
        ),
        "model.strategy": strategy,
        "model.encoder_lr_mult": rules.encoder_lr_mult(task, str(strategy.value), pretrained),
        "train.epochs": Choice(
            epochs, f"what fits the budget per run ({format_duration(per_run)})"
        ),
        "train.batch_size": Choice(m.batch, f"{m.device}: the probed batch"),
        "train.loss": rules.loss(fp, task),
        "train.patience": rules.patience(epochs, True),
        "train.class_weights": Choice(
            "auto" if fp.imbalance > 3 and task != "segmentation" else "none",
            f"largest/smallest class {fp.imbalance:.1f} ({'> 3: balanced' if fp.imbalance > 3 else '<= 3: none needed'})",
        ),
        "train.accelerator": Choice("auto", f"CUDA, else MPS, else CPU (planned on {m.device})"),
        "train.precision": Choice(
            "auto", f"bf16-mixed on a GPU that has it, else 32 ({m.precision} here)"
        ),
        "train.max_time": Choice(
            format_duration(math.ceil(per_run)), "a safety net: the run stops at its share"
        ),
    }
    if m.layout_steps:
        keys["train.memory_format"] = Choice(
            m.layout,
            f"the faster layout of {m.encoder} at {m.size} px here (a step: {m.layout_timings()}); "
            "fixed, so the run trains in the layout its time was predicted with",
        )
    if task == "segmentation":
        del keys["train.class_weights"]
    return keys
