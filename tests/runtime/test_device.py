"""Device and precision resolution (medtl.runtime.device) with the GPUs mocked, the time
budget parser, and the inference paths following ``--device``."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from medtl.runtime import device as dev
from medtl.utils.errors import ConfigError


def _machine(monkeypatch, cuda: bool = False, mps: bool = False, bf16: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize(
    ("cuda", "mps", "want", "got"),
    [
        (True, True, "auto", "cuda"),
        (False, True, "auto", "mps"),
        (False, False, "auto", "cpu"),
        (True, False, "gpu", "cuda"),
        (False, True, "gpu", "mps"),
        (True, True, "cpu", "cpu"),
        (True, False, "cuda", "cuda"),
        (False, True, "mps", "mps"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, want, got):
    _machine(monkeypatch, cuda=cuda, mps=mps)
    assert dev.resolve_accelerator(want) == got
    assert dev.resolve_device(want).type == got


@pytest.mark.parametrize("want", ["cuda", "gpu", "mps"])
def test_a_gpu_asked_for_and_absent_is_one_config_error(monkeypatch, want):
    _machine(monkeypatch)
    with pytest.raises(ConfigError, match=f"device {want} asked for but torch sees none") as e:
        dev.resolve_accelerator(want)
    assert "\n" not in str(e.value)
    assert dev.runs_on_cpu(want)  # a cuda run used here counts as CPU work, never raises


def test_unknown_device_names_the_choices(monkeypatch):
    _machine(monkeypatch)
    with pytest.raises(ConfigError, match="auto, cpu, cuda, mps"):
        dev.resolve_accelerator("tpu")


@pytest.mark.parametrize(
    ("acc", "bf16", "want", "got"),
    [
        ("cuda", True, "auto", "bf16-mixed"),
        ("cuda", False, "auto", "32"),
        ("cpu", True, "auto", "32"),
        ("mps", True, "auto", "32"),
        ("cuda", True, "16-mixed", "16-mixed"),
        ("cpu", False, "bf16-mixed", "bf16-mixed"),
    ],
)
def test_precision_auto_is_bf16_only_on_a_cuda_gpu_that_has_it(monkeypatch, acc, bf16, want, got):
    _machine(monkeypatch, cuda=acc == "cuda", bf16=bf16)
    assert dev.resolve_precision(want, acc) == got


def test_device_facts_for_run_json(monkeypatch):
    _machine(monkeypatch, cuda=True, bf16=True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100")
    assert dev.device_facts("auto", "auto") == {
        "asked": "auto",
        "accelerator": "cuda",
        "name": "NVIDIA H100",
        "precision": "bf16-mixed",
    }


def test_loaders_get_pinned_memory_and_workers_on_cuda_only():
    data = torch.utils.data.TensorDataset(torch.zeros(4, 1))
    cpu = dev.tune_loader(torch.utils.data.DataLoader(data), "cpu")
    assert (cpu.pin_memory, cpu.num_workers) == (False, 0)
    gpu = dev.tune_loader(torch.utils.data.DataLoader(data), "cuda", workers=3)
    assert (gpu.pin_memory, gpu.num_workers) == (True, 3)
    two = dev.tune_loader(torch.utils.data.DataLoader(data, num_workers=2), "cuda", workers=3)
    assert two.num_workers == 2  # the user's data.workers is kept


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        (45, 45),
        ("30s", 30),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("00:00:30:00", 1800),
        ("01:02:03:04", 86400 + 7200 + 180 + 4),
    ],
)
def test_durations(text, seconds):
    assert dev.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", [None, "", "0", "none"])
def test_no_budget(text):
    assert dev.parse_duration(text) is None


def test_bad_duration_is_one_line():
    with pytest.raises(ConfigError, match="time budget '30 minutes' not understood"):
        dev.parse_duration("30 minutes")


def test_format_duration():
    assert [dev.format_duration(s) for s in (5, 125, 3700)] == ["5s", "2m05s", "1h01m"]


def test_cpu_allocator_tuning_only_for_cpu_work(monkeypatch):
    from medtl.configuration.loading import load_config
    from medtl.runtime import cpu

    tuned: list[int] = []
    monkeypatch.setattr(cpu, "tune_malloc", lambda *a: tuned.append(1) or True)
    _machine(monkeypatch, cuda=True)
    with cpu.owning_process():
        with cpu.threads_for(load_config(overrides=["train.threads=1"])):  # auto -> cuda
            pass
        assert tuned == []
        with cpu.threads_for(load_config(overrides=["train.threads=1", "train.accelerator=cpu"])):
            pass
    assert tuned == [1]


def test_memory_format_probe_only_on_cpu(monkeypatch):
    from types import SimpleNamespace

    from medtl.runtime import memory_format

    probed: list[int] = []
    monkeypatch.setattr(memory_format, "probe_layouts", lambda t, b: probed.append(1) or ("x", {}))
    monkeypatch.setattr(memory_format, "set_layout", lambda t, layout: None)
    train = SimpleNamespace(
        memory_format="auto", accelerator="auto", devices=1, num_nodes=1, deterministic=False
    )
    cfg = SimpleNamespace(train=train)
    batch = [(torch.zeros(1, 3, 8, 8), None, None, None)]
    _machine(monkeypatch, cuda=True)
    assert memory_format.choose_layout(cfg, None, batch) == ("contiguous", None)
    _machine(monkeypatch)
    assert memory_format.choose_layout(cfg, None, batch)[0] == "x"
    assert probed == [1]
