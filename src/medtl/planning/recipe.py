"""A :class:`~medtl.planning.planner.Plan` as plan.yaml: a config ``medtl train -c`` and
``medtl compare -c`` read, each key's reason as its comment, the data's fingerprint, the
probe and the predicted wall time and peak memory in the header."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medtl.configuration.loading import load_config
from medtl.planning.fingerprint import describe
from medtl.planning.planner import Plan
from medtl.planning.probe import Measure
from medtl.runtime.device import format_duration
from medtl.utils.files import atomic_write_text


def _header(plan: Plan, out: Path) -> list[str]:
    k = plan.folds
    run = (
        f"medtl compare -c {out} --folds {k} --out {out.stem}-cv"
        if k >= 2
        else f"medtl train -c {out}"
    )
    lines = [
        f"medtl plan of {plan.data} ({plan.task}, budget {format_duration(plan.budget_s)}, "
        f"planned on {plan.device})",
        *describe(plan.fingerprint),
        "probe (random weights, timed optimiser steps on this machine):",
        *(_probe_line(m) for m in plan.probes),
        f"predicted: {format_duration(plan.run_fit_s)} of fitting per run x {max(k, 1)} run(s); "
        f"{format_duration(plan.total_s)} in all; peak memory ~{plan.peak_mb:.0f} MB "
        f"({'GPU' if plan.device == 'cuda' else 'host'})",
        f"folds: {k or 'one split'} ({plan.folds_reason})",
        "run.json's plan_check records the predicted against the measured fit time and peak memory",
        f"run: {run}",
        *plan.notes,
    ]
    return [f"# {line}" for line in lines]


def _probe_line(m: Measure) -> str:
    """One probe's timings as plan.yaml's header shows them (CPU: the step in each layout)."""
    layouts = m.layout_timings()
    step = f"step {m.step_s:.3f}s" + (f" ({layouts})" if layouts else "")
    return (
        f"  {m.encoder} {m.size}px batch {m.batch} {m.precision}: {step}, "
        f"forward {m.forward_s:.3f}s, loading {m.load_s:.3f}s, checkpoint {m.checkpoint_s:.2f}s, "
        f"peak {m.peak_mb:.0f} MB"
    )


def to_yaml(plan: Plan, out: Path) -> str:
    """plan.yaml's text (see the module docstring)."""
    lines = _header(plan, out)
    sections: dict[str, list[str]] = {}
    for key, choice in plan.keys.items():
        value = json.dumps(choice.value)  # a JSON scalar is a YAML scalar (strings quoted)
        if "." not in key:
            lines.append(f"{key}: {value}  # {choice.reason}")
            continue
        section, name = key.split(".", 1)
        sections.setdefault(section, []).append(f"  {name}: {value}  # {choice.reason}")
    sections["train"].append(
        f"  planned_seconds: {round(plan.run_fit_s, 1)}  # predicted fit time of one run"
    )
    where = "GPU memory" if plan.device == "cuda" else "resident memory of the process"
    sections["train"].append(f"  planned_peak_mb: {round(plan.peak_mb)}  # predicted peak {where}")
    for section in ("data", "model", "train"):
        lines += [f"{section}:", *sections.get(section, [])]
    return "\n".join(lines) + "\n"


def write_plan(plan: Plan, out: str | Path) -> Path:
    """Write plan.yaml (atomically) after checking that it loads as a config."""
    out = Path(out)
    text = to_yaml(plan, out)
    load_config(base=yaml.safe_load(text))  # a recipe that does not load is never written
    atomic_write_text(out, text)
    return out
