"""medtl._bench: the pure parts only (schema, ratio maths, FLOP counting, script locator).

No real benchmark runs here; ``benchmarks/run_bench.py --quick`` is the smoke test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medtl import _bench as bench
from medtl.utils.errors import MedtlError

# The reference loop lives next to the project, not in it; tests pass its path explicitly.
NAIVE = Path(__file__).resolve().parents[3] / "shared" / "bench" / "naive_baseline.py"


def _fake_results() -> dict:
    naive = {
        "finetune": {"train_img_per_s": 2.0, "infer_img_per_s": 6.0, "peak_rss_mb": 1500.0},
        "frozen": {"train_img_per_s": 4.0, "infer_img_per_s": 6.0, "peak_rss_mb": 1400.0},
    }
    medtl = {
        "finetune": {
            "train_img_per_s": 3.0,
            "infer_img_per_s": 12.0,
            "loader_img_per_s": 3000.0,
            "train_flops_per_img": 30e9,
            "infer_flops_per_img": 10e9,
            "peak_rss_mb": 1200.0,
            "layout": "channels_last",
            "infer_variant": "conv-bn folded, channels_last",
            "infer_variants": {"eager": 7.0, "medtl": 12.0},
            "cache_build_s": 0.5,
        },
        "frozen": {"train_img_per_s": 5.0, "train_flops_per_img": 20e9, "peak_rss_mb": 1900.0},
    }
    return {"resnet18": {"naive": naive, "medtl": medtl}}


def test_summarise_headline_keys_and_ratios():
    s = bench.summarise(_fake_results(), peak_gflops=100.0, meta={"n_images": 64})
    for key in (
        "train_speedup",
        "frozen_speedup",
        "infer_speedup",
        "loader_vs_train",
        "peak_rss_mb",
        "train_mfu",
        "infer_mfu",
        "matmul_gflops",
        "encoders",
    ):
        assert key in s
    assert s["schema"] == bench.SCHEMA
    assert s["train_speedup"] == 1.5
    assert s["frozen_speedup"] == 1.25
    assert s["infer_speedup"] == 2.0
    assert s["loader_vs_train"] == 1000.0
    assert s["peak_rss_mb"] == 1900.0  # largest medtl process, frozen run included
    assert s["naive_peak_rss_mb"] == 1500.0
    assert s["train_mfu"] == pytest.approx(30e9 * 3.0 / 100e9)
    assert s["infer_mfu"] == pytest.approx(10e9 * 12.0 / 100e9)
    ft = s["encoders"]["resnet18"]["finetune"]
    assert ft["naive_epoch_s"] == 32.0 and ft["medtl_epoch_s"] == pytest.approx(21.33)
    assert s["encoders"]["resnet18"]["inference"]["variant"] == "conv-bn folded, channels_last"


def test_summarise_reference_falls_back_to_first_encoder_and_tolerates_gaps():
    results = {"vgg16_bn": _fake_results()["resnet18"]}
    del results["vgg16_bn"]["medtl"]["frozen"]
    s = bench.summarise(results, peak_gflops=0.0, meta={"n_images": 8})
    assert s["reference_encoder"] == "vgg16_bn"
    assert s["frozen_speedup"] is None  # no medtl frozen run: no ratio, no crash
    assert s["train_mfu"] is None  # no peak measured
    table = bench.format_table(s)
    assert table.splitlines()[0].split()[:2] == ["encoder", "strategy"]
    assert "inference" in table and "-" in table


@pytest.mark.parametrize(
    ("ours", "naive", "expected"),
    [(3.0, 2.0, 1.5), (1.0, 3.0, 0.333), (None, 2.0, None), (2.0, 0.0, None)],
)
def test_ratio(ours, naive, expected):
    assert bench.ratio(ours, naive) == expected


def test_epoch_seconds_and_mfu():
    assert bench.epoch_seconds(64, 8.0) == 8.0
    assert bench.epoch_seconds(64, None) is None
    assert bench.mfu(1e9, 10.0, 20.0) == 0.5
    assert bench.mfu(None, 10.0, 20.0) is None


def test_count_flops_tiny_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = torch.rand(2, 3, 8, 8)
    fwd = 2 * 4 * 3 * 9 * 8 * 8  # multiply-adds x 2, per image
    assert bench.count_flops(conv, x) == fwd
    train = bench.count_flops(conv, x, lambda out: out.mean())
    assert train == 2 * fwd  # weight gradient only: the input needs no gradient
    assert conv.weight.grad is None  # gradients are cleared afterwards


def test_matmul_gflops_is_positive():
    assert bench.matmul_gflops(n=64, reps=2, warmup=1) > 0


def test_locate_naive_missing_names_path_and_fix(tmp_path):
    missing = tmp_path / "nowhere" / "naive_baseline.py"
    with pytest.raises(MedtlError) as err:
        bench.locate_naive(missing)
    assert str(missing) in str(err.value) and "--naive PATH" in str(err.value)


def test_locate_naive_given_then_env_then_cwd(tmp_path, monkeypatch):
    script = tmp_path / "naive_baseline.py"
    script.write_text("print('{}')\n")
    assert bench.locate_naive(script) == script
    elsewhere = tmp_path / "env" / "loop.py"
    elsewhere.parent.mkdir()
    elsewhere.write_text("print('{}')\n")
    monkeypatch.setenv(bench.NAIVE_ENV, str(elsewhere))
    assert bench.locate_naive() == elsewhere  # the environment variable, when no path is given
    assert bench.locate_naive(script) == script  # an explicit path wins
    monkeypatch.delenv(bench.NAIVE_ENV)
    monkeypatch.chdir(tmp_path)
    assert bench.locate_naive() == tmp_path / "naive_baseline.py"  # the current directory
    assert bench.locate_naive("env/loop.py") == elsewhere  # relative: made absolute, since
    # the loop runs with a scratch directory as its working directory (`make bench` passes
    # ../shared/bench/naive_baseline.py)
    monkeypatch.chdir(elsewhere.parent)
    with pytest.raises(MedtlError) as err:
        bench.locate_naive()
    msg = str(err.value)
    assert "--naive PATH" in msg and bench.NAIVE_ENV in msg and "\n" not in msg
    assert str(elsewhere.parent / "naive_baseline.py") in msg


@pytest.mark.skipif(not NAIVE.is_file(), reason=f"naive baseline not found at {NAIVE}")
def test_locate_naive_finds_the_reference_loop_by_its_path():
    assert bench.locate_naive(NAIVE) == NAIVE
    assert bench.locate_naive(str(NAIVE)) == NAIVE


def test_package_never_points_outside_the_project():
    src = Path(bench.__file__).resolve().parent
    for module in src.glob("*.py"):
        assert '"shared"' not in module.read_text(), module


def test_naive_command_and_json_line():
    cmd = bench.naive_command(Path("n.py"), Path("D"), "resnet18", 256, 8, 10, 2, frozen=True)
    assert cmd[1:] == [
        "n.py",
        "D",
        "--encoder",
        "resnet18",
        "--size",
        "256",
        "--batch",
        "8",
        "--steps",
        "10",
        "--warmup",
        "2",
        "--frozen",
    ]
    assert "--frozen" not in bench.naive_command(Path("n.py"), Path("D"), "r", 64, 8, 3, 1, False)
    assert bench.last_json_line('noise\n{"a": 1}\n{"b": 2}\ntrailing\n') == {"b": 2}
    with pytest.raises(ValueError):
        bench.last_json_line("no json here")


def test_worker_trains_the_frozen_decoder_on_cached_features(phantoms, monkeypatch):
    # the practical-peak probe (2048 matmuls, ~10 CPU s a run) is not what this test checks:
    # each run measures a small matmul instead, still in the worker's process and dtype
    monkeypatch.setattr(
        "medtl._bench.worker.peak_gflops",
        lambda dtype: bench.matmul_gflops(n=64, reps=2, warmup=1, dtype=dtype),
    )
    spec = {
        "overrides": ["train.threads=1"],
        "encoder": "resnet18",
        "size": 64,
        "batch": 4,
        "steps": 2,
        "warmup": 1,
        "data_root": str(phantoms),
        "inference": False,
    }
    frozen = bench.medtl_worker({**spec, "strategy": "frozen"})
    assert frozen["feature_cache_s"] is not None and frozen["layout"] == "contiguous"
    assert frozen["train_img_per_s"] > 0 and frozen["peak_gflops"] > 0
    finetune = bench.medtl_worker({**spec, "strategy": "finetune", "layout": "contiguous"})
    assert finetune["feature_cache_s"] is None
    uncached = bench.medtl_worker(
        {
            **spec,
            "strategy": "frozen",
            "overrides": ["train.threads=1", "train.feature_cache=false"],
        }
    )
    assert uncached["feature_cache_s"] is None


def test_median_merge_keeps_medians_and_raw_repeats():
    runs = [
        {"train_img_per_s": 2.0, "layout": "contiguous", "peak_rss_mb": 10, "flag": True},
        {"train_img_per_s": 9.0, "layout": "channels_last", "peak_rss_mb": 30, "flag": False},
        {"train_img_per_s": 3.0, "layout": "contiguous", "peak_rss_mb": 20, "flag": True},
    ]
    m = bench.median_merge(runs)
    assert m["train_img_per_s"] == 3.0 and m["peak_rss_mb"] == 20
    assert m["layout"] == "contiguous" and m["flag"] is True  # non-numbers: the first run's
    assert m["repeats_train_img_per_s"] == [2.0, 9.0, 3.0]
    assert "repeats_train_img_per_s" not in bench.median_merge(runs[:1])
    assert bench.cli_settings(repeats=3)["repeats"] == 3
