"""Every registered encoder x decoder builds and trains one step; heads and impossible pairs."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import medtl.models.build as build
from medtl.errors import ConfigError
from medtl.models.build import ARCHS, DILATED_ARCHS, build_model
from medtl.models.encoders import ENCODERS, create_encoder


@functools.cache
def _encoder(name: str):
    return create_encoder(name, "none")


@pytest.fixture(autouse=True)
def cached_encoders(monkeypatch):
    """Each encoder is built once per session and copied (VGG takes seconds to build)."""
    monkeypatch.setattr(
        build,
        "create_encoder",
        lambda name, weights="none", in_channels=3: (
            copy.deepcopy(_encoder(name)[0])
            if in_channels == 3
            else create_encoder(name, weights, in_channels)[0],
            "random init",
        ),
    )


def _dilatable(encoder: str) -> bool:
    return hasattr(_encoder(encoder)[0], "make_dilated") and ENCODERS[encoder].family not in (
        "vgg",
        "densenet",
    )


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_decoder_pair_trains_one_step(encoder, arch):
    if arch in DILATED_ARCHS and not _dilatable(encoder):
        with pytest.raises(
            ConfigError, match=f"model.arch={arch} cannot be built on model.encoder={encoder}"
        ):
            build_model("segmentation", arch, encoder, "none")
        return
    net, _ = build_model("multitask", arch, encoder, "none", n_classes=3)
    x = torch.rand(2, 3, 64, 64)
    out = net(x)
    assert out["seg"].shape == (2, 1, 64, 64) and out["cls"].shape == (2, 3)
    (out["seg"].mean() + out["cls"].mean()).backward()
    assert net.seg_head.weight.grad is not None if hasattr(net.seg_head, "weight") else True
    first = next(net.encoder.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_classification_model_has_no_decoder():
    net, _ = build_model("classification", "unet", "resnet18", "none", n_classes=4)
    assert net.decoder is None and net.seg_head is None
    assert set(net(torch.rand(1, 3, 64, 64))) == {"cls"}


def test_grey_input_uses_one_channel_and_its_mean(monkeypatch):
    monkeypatch.undo()
    net, _ = build_model("segmentation", "unet", "resnet18", "none", in_channels=1)
    assert net.mean.shape == (1, 1, 1, 1)
    assert net.mean.item() == pytest.approx((0.485 + 0.456 + 0.406) / 3)
    assert net(torch.rand(1, 3, 64, 64))["seg"].shape == (1, 1, 64, 64)


def test_unknown_arch_and_too_few_classes():
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        build_model("segmentation", "unett", "resnet18", "none")
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("multitask", "unet", "resnet18", "none", n_classes=1)


def test_frozen_modules_stay_in_eval_mode():
    from medtl.models.strategy import apply_strategy

    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    apply_strategy(net, 0)
    net.train()
    assert not net.encoder.training and net.decoder.training
    assert not any(p.requires_grad for p in net.encoder.parameters())
