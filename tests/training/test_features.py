"""Frozen-encoder feature cache: same loss as the uncached model, same training results."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.data.pipeline import make_loader, prepare
from medtl.models.build import build_model
from medtl.training.features import FeatureDataset, cache_reason, feature_bytes
from medtl.training.task import MedtlTask
from tests.conftest import train_tiny


def test_cached_features_give_the_same_loss_on_the_same_batch(phantoms):
    cfg = load_config(
        overrides=[
            f"data.root={phantoms}",
            "data.image_size=32",
            "model.weights=none",
            "model.encoder=resnet18",
            "model.strategy=frozen",
            "data.augment=none",
            "task=multitask",
        ]
    )
    data = prepare(cfg)
    net, _ = build_model("multitask", "unet", "resnet18", "none", n_classes=3)
    task = MedtlTask(net, cfg, n_classes=3)
    rows = [0, 3, 5, 9]
    x, mask, label, _ = next(iter(make_loader(data, rows, cfg, train=False)))
    feats = FeatureDataset(net, data.cache, rows, data.labels)
    f_batch = tuple(
        torch.stack([feats[i][0][k] for i in range(len(rows))]) for k in range(len(feats.features))
    )
    task.train()  # the heads train (dropout on): the same seed gives the same dropout mask
    torch.manual_seed(0)
    plain = task.compute_loss(task(x), mask, label)
    torch.manual_seed(0)
    cached = task.compute_loss(task(f_batch), torch.stack([feats[i][1] for i in range(4)]), label)
    for k in plain:
        assert cached[k].item() == pytest.approx(plain[k].item(), rel=1e-5, abs=1e-6), k


def test_cache_is_used_only_when_augmentation_allows():
    base = ["model.strategy=frozen"]
    assert cache_reason(load_config(overrides=[*base, "data.augment=none"])) is None
    assert (
        cache_reason(load_config(overrides=[*base, "data.augment=light", "data.augment_copies=3"]))
        is None
    )
    assert "augment_copies" in cache_reason(load_config(overrides=[*base, "data.augment=light"]))
    assert (
        cache_reason(load_config(overrides=["model.strategy=finetune", "data.augment=none"]))
        is not None
    )


FROZEN = ["model.strategy=frozen", "train.epochs=2"]


@pytest.fixture(scope="module")
def cached_run(phantoms, tmp_path_factory) -> Path:
    """A frozen two-epoch training with its features cached in memory; tests only read it."""
    out = tmp_path_factory.mktemp("cached")
    cache = ["train.feature_cache=true", "train.feature_cache_mb=1024"]
    return train_tiny(phantoms, out, *FROZEN, *cache, "output.name=cached")


def test_frozen_training_with_and_without_cache_agree(phantoms, cached_run, tmp_path):
    plain = train_tiny(phantoms, tmp_path, *FROZEN, "train.feature_cache=false", "output.name=c")
    runs = [cached_run, plain]
    assert "feature cache: frozen encoder features" in (runs[0] / "train.log").read_text()
    a, b = (
        [float(r["val_dice"]) for r in csv.DictReader((run / "metrics.csv").open())] for run in runs
    )
    assert a == pytest.approx(b, abs=1e-4)


def test_bfloat16_cache_halves_memory_and_keeps_the_loss(phantoms):
    cfg = load_config(
        overrides=[f"data.root={phantoms}", "data.image_size=32", "model.weights=none"]
    )
    data = prepare(cfg)
    torch.manual_seed(0)
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    task = MedtlTask(net, cfg).eval()
    rows = [0, 3, 5, 9]
    f32 = FeatureDataset(net, data.cache, rows, None)
    bf16 = FeatureDataset(net, data.cache, rows, None, dtype=torch.bfloat16)
    size = [sum(f.numel() * f.element_size() for f in d.features) for d in (f32, bf16)]
    assert f32.shapes == [tuple(f.shape[1:]) for f in f32.features]
    assert size[1] * 2 == size[0] == feature_bytes(net, 32) * len(rows)
    assert feature_bytes(net, 32, torch.bfloat16) * 2 == feature_bytes(net, 32)
    item = bf16[1][0]
    assert all(f.dtype == torch.float32 for f in item)  # the decoder trains in float32
    assert not torch.equal(item[3], f32[1][0][3])  # really rounded
    losses = []
    for d in (f32, bf16):
        batch = tuple(torch.stack([d[i][0][k] for i in range(4)]) for k in range(len(d.features)))
        with torch.no_grad():
            out = task(batch)
            losses.append(task.compute_loss(out, torch.stack([d[i][1] for i in range(4)]), None))
    assert losses[1]["loss"].item() == pytest.approx(losses[0]["loss"].item(), rel=1e-2)


def test_bfloat16_cache_from_the_config(phantoms, tmp_path):
    run = train_tiny(
        phantoms,
        tmp_path,
        "model.strategy=frozen",
        "train.feature_cache_dtype=bfloat16",
        "output.name=bf16",
    )
    log = (run / "train.log").read_text()
    assert "feature cache: frozen encoder features" in log and "bfloat16" in log


def _stub_net(channels: int = 4):
    """An 'encoder' of two levels (the image and a copy with ``channels`` channels at half
    size): FeatureDataset needs ``encoder``, ``normalise``, ``training`` and ``train``."""

    class Stub(torch.nn.Module):
        def normalise(self, x):
            return x

        def encoder(self, x):
            half = torch.nn.functional.avg_pool2d(x, 2)
            return [x, half.repeat(1, channels // 3 + 1, 1, 1)[:, :channels] + 0.5]

    return Stub()


class _Cache:
    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.images = [torch.randint(0, 256, (3, size, size), generator=g).byte() for _ in range(n)]
        self.masks = [(img[:1] > 127).byte() for img in self.images]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_features_on_disk_are_the_in_memory_ones_and_the_file_goes(tmp_path, dtype):
    net, cache = _stub_net(), _Cache(5, 16)
    mem = FeatureDataset(net, cache, [0, 2, 3, 4], [1, 0, 1, 0, 1], batch=3, dtype=dtype)
    disk = FeatureDataset(
        net, cache, [0, 2, 3, 4], [1, 0, 1, 0, 1], batch=3, dtype=dtype, spill=tmp_path
    )
    assert disk.features == [] and disk.shapes == mem.shapes == [(3, 16, 16), (4, 8, 8)]
    files = list(tmp_path.glob("features-*.bin"))
    assert len(files) == 1 and files[0].stat().st_size == 4 * (3 * 256 + 4 * 64) * dtype.itemsize
    for i in (0, 3, 5):  # 5: a padding index reads item 1, row -1
        a, b = mem[i], disk[i]
        assert all(
            torch.equal(x, y) and y.dtype == torch.float32 for x, y in zip(a[0], b[0], strict=True)
        )
        assert torch.equal(a[1], b[1]) and a[2:] == b[2:]
    assert disk[5][3] == -1 and torch.equal(disk[5][0][1], disk[1][0][1])
    import pickle

    worker_copy = pickle.loads(pickle.dumps(disk))  # what a spawned DataLoader worker gets
    assert torch.equal(worker_copy[2][0][0], mem[2][0][0])
    del worker_copy
    assert files[0].exists()  # a worker's copy does not delete the file
    files[0].write_bytes(b"")  # changed under the fit: a one-line error, not a traceback
    from medtl.utils.errors import MedtlError

    with pytest.raises(MedtlError, match="cut short"):
        disk[0]
    del disk
    assert not files[0].exists()


def test_features_beyond_the_allowance_go_to_disk(tmp_path):
    from medtl.training.features import spill_folder

    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    per_item = feature_bytes(net, 64) / 2**20
    cfg = load_config(overrides=["data.image_size=64", "train.feature_cache_mb=1"])
    n_fit = int(1 / per_item)
    assert spill_folder(cfg, net, n_fit, tmp_path) is None
    assert spill_folder(cfg, net, n_fit + 1, tmp_path) == tmp_path
    bf16 = load_config(
        overrides=["data.image_size=64", "train.feature_cache_mb=1",
                   "train.feature_cache_dtype=bfloat16"]
    )  # fmt: skip
    assert spill_folder(bf16, net, n_fit + 1, tmp_path) is None  # half the bytes fit


def test_frozen_training_with_features_on_disk_matches_memory(phantoms, cached_run, tmp_path):
    on_disk = train_tiny(phantoms, tmp_path, *FROZEN, "train.feature_cache_mb=0", "output.name=mb0")
    runs = [on_disk, cached_run]
    log = (runs[0] / "train.log").read_text()
    assert f"on disk in {runs[0]}" in log and "in memory" in (runs[1] / "train.log").read_text()
    assert not list(runs[0].rglob("features-*.bin"))  # deleted after the fit
    a, b = (
        [float(r["val_dice"]) for r in csv.DictReader((run / "metrics.csv").open())] for run in runs
    )
    assert a == b  # float32 on disk: the same numbers


_RSS_CHILD = r"""
import ctypes, json, sys, torch
from pathlib import Path
from medtl.training.features import FeatureDataset

class Net(torch.nn.Module):
    def normalise(self, x):
        return x
    def encoder(self, x):  # 32 MB of float32 features per image of 3 x 256 x 256
        return [x.repeat(1, 32, 1, 1)]

class Cache:
    images = [torch.full((3, 256, 256), i, dtype=torch.uint8) for i in range(12)]
    masks = None

def status(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

def growth(spill):
    # freed memory goes back to the system, so the next phase cannot reuse it unseen, and
    # the peak resident memory (VmHWM) starts again from what is resident now
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = status("VmRSS")
    ds = FeatureDataset(Net(), Cache(), range(12), None, batch=2, spill=spill)
    assert float(ds[11][0][0][0, 0, 0]) > float(ds[0][0][0][0, 0, 0])
    del ds
    return status("VmHWM") - start

disk = growth(Path(sys.argv[1]))
print(json.dumps({"disk": disk, "memory": growth(None)}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="VmHWM is Linux's")
def test_features_on_disk_keep_them_out_of_the_process_memory(tmp_path):
    """12 images x 32 MB of features: in memory the child's peak grows by their 384 MB; on
    disk by about one batch (2 images). One child measures both, the peak reset between
    them (``/proc/self/clear_refs``), the one on disk first."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])
    cmd = [sys.executable, "-c", _RSS_CHILD, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = json.loads(proc.stdout.strip().splitlines()[-1])
    memory, disk = peak["memory"], peak["disk"]
    assert memory - disk > 250, (memory, disk)
    assert not list(tmp_path.glob("features-*.bin"))
