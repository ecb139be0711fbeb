"""The plan's probe times both memory layouts on the CPU and the plan fixes the faster one,
so the trainer runs in the layout the prediction was timed in."""

from __future__ import annotations

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.planning import probe
from medtl.planning.planner import _decide
from medtl.planning.probe import Measure
from tests.planning.test_plan import _fp


def _fake_clock(monkeypatch, cost: dict[str, float]) -> list[str]:
    """``time.perf_counter`` in the probe advances by ``cost[layout]`` per call, the layout
    being the one :func:`probe.set_layout` last set; returns the layouts set, in order."""
    layouts = ["contiguous"]
    now = [0.0]
    real = probe.set_layout

    def set_layout(task, layout):
        layouts.append(layout)
        real(task, layout)

    def clock():
        now[0] += cost[layouts[-1]]
        return now[0]

    monkeypatch.setattr(probe, "set_layout", set_layout)
    monkeypatch.setattr(probe.time, "perf_counter", clock)
    return layouts


@pytest.mark.parametrize(
    ("fast", "slow"), [("channels_last", "contiguous"), ("contiguous", "channels_last")]
)
def test_the_cpu_probe_keeps_the_faster_layout_and_both_timings(monkeypatch, fast, slow):
    cfg = load_config(None, overrides=["model.encoder=resnet18", "model.weights=none"])
    layouts = _fake_clock(monkeypatch, {fast: 0.25, slow: 1.0})
    m = probe.measure(cfg, "resnet18", 32, 2, torch.device("cpu"), steps=2)
    assert m.layout_steps == {fast: 0.25, slow: 1.0}
    assert (m.layout, m.step_s) == (fast, 0.25)
    assert layouts[1:3] == ["contiguous", "channels_last"] and layouts[-1] == fast


def _measure(layout_steps: dict[str, float]) -> Measure:
    step = min(layout_steps.values()) if layout_steps else 0.5
    return Measure("resnet18", 128, 8, "cpu", "32", step, step / 3, 0.2, 900.0, 180.0,
                   layout_steps=layout_steps)  # fmt: skip


def test_the_plan_fixes_the_timed_layout_with_both_timings_as_its_reason():
    m = _measure({"contiguous": 0.6, "channels_last": 0.4})
    plan = _decide(_fp(), "segmentation", 120, "cpu", _size(), [m], 0, True)
    choice = plan.keys["train.memory_format"]
    assert choice.value == "channels_last"
    assert "contiguous 0.600s, channels_last 0.400s" in choice.reason
    # the epochs are those of the faster layout's step
    slow = _decide(
        _fp(), "segmentation", 120, "cpu", _size(), [_measure({"contiguous": 0.6})], 0, True
    )
    assert plan.keys["train.epochs"].value > slow.keys["train.epochs"].value


def test_without_a_timing_per_layout_the_trainer_chooses():
    plan = _decide(_fp(), "segmentation", 3600, "cuda", _size(), [_measure({})], 0, True)
    assert "train.memory_format" not in plan.keys


def _size():
    from medtl.planning import choices as rules

    return rules.image_size(_fp(), "segmentation")


def test_a_run_whose_layout_the_plan_fixed_has_no_layout_probe_to_pay_for():
    from medtl.planning.choices import fit_overhead

    fixed = _measure({"contiguous": 0.6, "channels_last": 0.4})
    assert fit_overhead(fixed) == 1.0  # train.memory_format is set: the run does not probe
    left = _measure({})  # the run probes both layouts, two steps each
    assert fit_overhead(left) == pytest.approx(1.0 + 4 * 0.5)
