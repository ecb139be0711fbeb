"""Reference values for label-map HD95, temperature fitting, HD95 definitions, the paired
bootstrap p and the FLOP count behind MFU."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.labels import label_hd95, score_row
from medtl.evaluation.segmentation import SegScorer
from medtl.metrics.calibration import T_BOUNDS, fit_temperature, nll, softmax
from medtl.metrics.paired import MIN_BOOTSTRAP_N, paired_bootstrap_pvalue
from medtl.metrics.surface import hd95_distance


class _Sample:
    def __init__(self, spacing):
        self.image = "x.png"
        self.meta = {"spacing": spacing} if spacing else {}


def _label_maps() -> tuple[np.ndarray, np.ndarray]:
    """Label 1 shifted 3 columns, label 2 shifted 2 columns: 3 and 2 pixels apart."""
    t = np.zeros((40, 40), np.uint8)
    p = t.copy()
    t[4:16, 4:16], p[4:16, 7:19] = 1, 1
    t[22:34, 20:32], p[22:34, 22:34] = 2, 2
    return p, t


def _scheme() -> MaskScheme:
    return MaskScheme(mode="labels", values=(1, 2), names=("a", "b"))


@pytest.mark.parametrize(
    "spacing,expected", [("0.5x2.0", (6.0, 4.0)), (None, (3.0, 2.0)), ("1.5", (4.5, 3.0))]
)
def test_label_map_hd95_is_in_mm_when_the_spacing_is_known(spacing, expected):
    p, t = _label_maps()
    scorer = SegScorer([_Sample(spacing)], [0])
    assert scorer.unit == ("mm" if spacing else "px")
    row = score_row(scorer, 0, p, t, _scheme(), "one")
    assert (row["hd95_a"], row["hd95_b"]) == pytest.approx(expected)
    assert row["hd95"] == pytest.approx(sum(expected) / 2)


def test_label_map_hd95_follows_max_directed():
    t = np.zeros((16, 16), np.uint8)
    t[2:10, 2:10] = 1
    p = t.copy()
    p[5:7, 10:14] = 1  # a 4-pixel protrusion: pooled 2.95, max_directed 3.35
    t[12:15, 12:15] = p[12:15, 12:15] = 2  # label b: a perfect match
    scheme = _scheme()
    for definition, value in (("pooled", 2.95), ("max_directed", 3.35)):
        scorer = SegScorer([_Sample(None)], [0], hd95=definition)
        assert score_row(scorer, 0, p, t, scheme, "one")["hd95_a"] == pytest.approx(value, abs=1e-3)
        ref = hd95_distance(p == 1, t == 1, 1.0, definition)
        assert label_hd95(scorer, 0, p, t, ("a", "b"))["hd95"] == pytest.approx(ref / 2)


def test_label_hd95_empty_rules():
    p, t = _label_maps()
    p[p == 2] = 0  # label b predicted nowhere: NaN, left out of the mean
    scorer = SegScorer([_Sample("0.5x2.0")], [0])
    out = label_hd95(scorer, 0, p, t, ("a", "b", "c"))  # c: absent from both
    assert out["hd95_a"] == pytest.approx(6.0) and math.isnan(out["hd95_b"])
    assert out["hd95_c"] == 0.0 and out["hd95"] == pytest.approx(3.0)
    skip = SegScorer([_Sample("0.5x2.0")], [0], empty="skip")
    assert math.isnan(label_hd95(skip, 0, p, t, ("a", "b", "c"))["hd95_c"])


def test_max_directed_can_be_smaller_than_pooled():
    """The README's example: two 2-pixel masks sharing one pixel, the others 5 apart."""
    p = np.zeros((12, 12), bool)
    t = p.copy()
    p[5, 1] = p[5, 6] = True
    t[5, 1] = t[0, 1] = True
    assert hd95_distance(p, t) == pytest.approx(5.0)
    assert hd95_distance(p, t, definition="max_directed") == pytest.approx(4.75)


# ------------------------------------------------------------------ temperature
@pytest.mark.parametrize("value", [0.0, 3.0, -7.5])
def test_constant_logits_give_temperature_one(value):
    z = np.full((50, 3), value)
    y = np.arange(50) % 3
    assert fit_temperature(z, y) == 1.0


def test_same_logits_every_row_give_temperature_one():
    z = np.tile([[2.0, 0.0, -1.0]], (30, 1))  # every image identical: T still matters
    y = np.zeros(30, int)
    t = fit_temperature(z, y)
    assert t < 1.0 and nll(z, y, t) < nll(z, y, 1.0)  # all right: sharpen


def _made_with(t_true: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(z / t_true): the right T is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0 * t_true, (n, 3))
    p = softmax(z, t_true)
    y = np.array([rng.choice(3, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("t_true", [0.5, 2.0, 40.0, 150.0])
def test_temperature_recovers_the_generating_value(t_true):
    z, y = _made_with(t_true)
    assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.12)


def test_temperature_at_a_bound_is_logged(caplog):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 50, (400, 2))
    y = rng.integers(0, 2, 400)  # labels unrelated to huge logits: T runs to the top
    with caplog.at_level(logging.WARNING, logger="medtl"):
        t = fit_temperature(z, y)
    assert t == pytest.approx(T_BOUNDS[1], rel=1e-2)
    assert "ended on its bound" in caplog.text


# ------------------------------------------------------------------ paired bootstrap
def _null_rate(n: int, sims: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(sims):
        d = rng.standard_normal(n)
        hits += paired_bootstrap_pvalue(d, np.zeros(n), n_boot=499, seed=k) <= 0.05
    return hits / sims


def test_bootstrap_p_holds_its_level_where_reported():
    """400 null data sets at the smallest reported n: the rate is within 3 Monte Carlo
    standard errors (1.1 points each) of 5% (the percentile bootstrap gave 7.7%)."""
    assert _null_rate(MIN_BOOTSTRAP_N, 400) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_bootstrap_p_not_reported_below_the_minimum():
    d = np.random.default_rng(0).normal(1.0, 0.1, MIN_BOOTSTRAP_N - 1)
    assert math.isnan(paired_bootstrap_pvalue(d, np.zeros_like(d)))
    d = np.random.default_rng(0).normal(1.0, 0.1, MIN_BOOTSTRAP_N)
    assert paired_bootstrap_pvalue(d, np.zeros_like(d), n_boot=999) == pytest.approx(1 / 1000)


def test_bootstrap_p_constant_differences_and_seeding():
    a = np.linspace(0, 1, 30)
    assert paired_bootstrap_pvalue(a + 0.25, a, n_boot=99) == pytest.approx(1 / 100)
    assert paired_bootstrap_pvalue(a, a) == 1.0
    d = np.random.default_rng(3).normal(0.1, 1, 40)
    p1 = paired_bootstrap_pvalue(d, np.zeros(40), seed=4)
    assert p1 == paired_bootstrap_pvalue(d, np.zeros(40), seed=4) and 0 < p1 <= 1


# ------------------------------------------------------------------ FLOPs and MFU
def test_flop_count_matches_a_hand_count_and_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from medtl.runtime.flops import count_flops

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(2048, 10),
    )
    x = torch.rand(2, 3, 16, 16)
    conv, linear = 16 * 16 * 8 * 3 * 9, 2048 * 10  # multiply-adds per image
    assert count_flops(net, x) == 2 * (conv + linear)  # a multiply-add is 2 FLOPs
    with FlopCounterMode(display=False) as counter:
        net(x)
    assert counter.get_total_flops() / 2 == count_flops(net, x)
    # backward: weight gradients of both layers and the linear's input gradient
    assert count_flops(net, x, lambda o: o.sum()) == 2 * (conv + linear) + 2 * (conv + 2 * linear)


def test_peak_probe_counts_multiply_adds_like_the_model():
    """The probe's 2 n^3 per matmul is FlopCounterMode's count of the same matmul."""
    from torch.utils.flop_counter import FlopCounterMode

    a = torch.randn(64, 64)
    with FlopCounterMode(display=False) as counter:
        a @ a
    assert counter.get_total_flops() == 2 * 64**3


def test_mfu_uses_the_workers_own_peak():
    from medtl._bench.summary import _encoder_summary

    e = {
        "medtl": {
            "finetune": {
                "train_img_per_s": 10.0,
                "train_flops_per_img": 5e9,
                "peak_gflops": 100.0,
                "infer_img_per_s": 20.0,
                "infer_flops_per_img": 2e9,
            }
        },
        "naive": {},
    }
    out = _encoder_summary(e, 64, peak=40.0)  # the parent's probe under-read
    assert out["finetune"]["train_mfu"] == 0.5 and out["inference"]["infer_mfu"] == 0.4


def test_probe_dtype_follows_precision():
    from medtl._bench.measure import probe_dtype

    assert probe_dtype("32") == torch.float32 and probe_dtype("bf16-mixed") == torch.bfloat16
    assert probe_dtype("16-mixed") == torch.float16 and probe_dtype("64") == torch.float64
