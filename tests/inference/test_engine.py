"""CPU inference optimisation (Conv-BN folding, channels_last) and batched predict."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.inference.engine import InferenceNet, infer, inference_net
from medtl.models.build import build_model

CASES = [
    ("multitask", "unet", "resnet18"),
    ("segmentation", "fcn8", "vgg11_bn"),
    ("segmentation", "light", "mobilenet_v2"),
    ("segmentation", "unet", "efficientnet-lite0"),
    ("classification", "unet", "densenet121"),
]


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, as after training (fresh ones are 0/1)."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


@pytest.mark.parametrize("task,arch,encoder", CASES)
def test_optimised_network_matches_eager(task, arch, encoder):
    torch.manual_seed(0)
    n_classes = 3 if task != "segmentation" else 0
    net = _trained_like(build_model(task, arch, encoder, "none", n_classes=n_classes)[0])
    bn_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    x = torch.rand(3, 3, 64, 64)
    eager = infer(net, x)
    fast = InferenceNet(net)
    got = infer(fast, x)
    assert got.keys() == eager.keys()
    for k in eager:
        assert got[k].shape == eager[k].shape
        scale = eager[k].abs().max().clamp(min=1.0)  # float rounding grows with the logits
        assert ((got[k] - eager[k]).abs().max() / scale).item() < 1e-4, k
    # the original network is left as it was (a traced copy is folded)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == bn_before
    assert next(net.parameters()).is_contiguous()
    if "not folded" not in fast.describe():
        assert "conv-bn folded" in fast.describe()
        bn_after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        assert bn_after < bn_before


def test_resnet_unet_is_folded_completely():
    net = _trained_like(build_model("segmentation", "unet", "resnet18", "none")[0])
    fast = InferenceNet(net)
    assert fast.describe() == "conv-bn folded, channels_last"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_eager_when_asked_or_off_cpu():
    net = build_model("segmentation", "unet", "resnet18", "none")[0]
    assert inference_net(net, "cpu", optimise=False) is net
    assert inference_net(net, "meta") is net
    assert isinstance(inference_net(net, "cpu"), InferenceNet)


def test_evaluate_records_the_inference_network(seg_run):
    from medtl.evaluation.evaluate import evaluate

    fast = evaluate(seg_run, split="val", plots=False)
    eager = evaluate(seg_run, split="val", plots=False, optimise=False)
    assert fast["inference"] == "conv-bn folded, channels_last"
    assert eager["inference"] == "eager"
    assert fast["segmentation"]["dice"]["mean"] == pytest.approx(
        eager["segmentation"]["dice"]["mean"], abs=0.02
    )


def test_predict_batches_give_the_same_outputs_as_one_at_a_time(mt_run, tmp_path):
    from medtl.inference.predictor import predict

    rng = np.random.default_rng(0)
    inputs = []
    for i, (h, w) in enumerate([(40, 60), (32, 32), (70, 50), (33, 47), (64, 64)]):
        p = tmp_path / "in" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).save(p)
        inputs.append(p)
    outs = {}
    for b in (1, 3):
        out = tmp_path / f"b{b}"
        predict(mt_run, [tmp_path / "in"], out, batch_size=b, optimise=False)
        outs[b] = out
    rows1 = list(csv.DictReader((outs[1] / "predictions.csv").open()))
    rows3 = list(csv.DictReader((outs[3] / "predictions.csv").open()))
    assert [r["image"] for r in rows1] == [str(p) for p in inputs]
    assert [r["label"] for r in rows1] == [r["label"] for r in rows3]
    for r1, r3 in zip(rows1, rows3, strict=True):
        for k in r1:
            if k.startswith("p_"):
                assert float(r1[k]) == pytest.approx(float(r3[k]), abs=1e-5)
    for p in inputs:
        m1 = np.array(Image.open(outs[1] / f"{p.stem}_mask.png"))
        m3 = np.array(Image.open(outs[3] / f"{p.stem}_mask.png"))
        assert m1.shape == Image.open(p).size[::-1]
        assert (m1 != m3).mean() < 0.01


def test_predict_rejects_a_zero_batch(seg_run, tmp_path, capsys):
    from medtl.cli.parser import main
    from medtl.inference.predictor import predict
    from medtl.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="--batch-size"):
        predict(seg_run, [tmp_path], tmp_path / "out", batch_size=0)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(img)
    code = main(
        ["predict", str(seg_run), str(img), "--out", str(tmp_path / "o"), "--batch-size", "0"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--batch-size" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_traced_folding_equals_torch_fx_fuse_and_skips_a_shared_conv():
    import copy

    from torch.fx.experimental.optimization import fuse

    from medtl.inference.engine import fold_traced_conv_bn

    net = _trained_like(build_model("multitask", "unet", "resnet18", "none", n_classes=3)[0])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want, got = fuse(copy.deepcopy(net))(x), fold_traced_conv_bn(copy.deepcopy(net))(x)
    assert all(torch.equal(want[k], got[k]) for k in want)

    class Shared(torch.nn.Module):  # one conv called twice, each time before its own BN
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.a, self.b = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)

        def forward(self, x):
            return self.a(self.conv(x)) + self.b(self.conv(x))

    shared = _trained_like(Shared())
    with torch.no_grad():
        assert torch.allclose(fold_traced_conv_bn(copy.deepcopy(shared))(x), shared(x))
