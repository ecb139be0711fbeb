"""Every registered encoder x decoder builds and trains one step; heads and impossible pairs."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import medtl.models.build as build
from medtl.models.build import ARCHS, DILATED_ARCHS, build_model
from medtl.models.encoders import ENCODERS, create_encoder
from medtl.utils.errors import ConfigError


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


def _shared_encoder(name: str, weights: str = "none", in_channels: int = 3):
    """The session's encoder itself, not a copy, its gradients cleared: for a build that does
    not dilate it, forward and backward change none of its weights (train-mode forwards only
    move BatchNorm statistics, which no assertion here reads)."""
    encoder = _encoder(name)[0]
    for p in encoder.parameters():
        p.grad = None
    return encoder, "random init"


def _dilatable(encoder: str) -> bool:
    return hasattr(_encoder(encoder)[0], "make_dilated") and ENCODERS[encoder].family not in (
        "vgg",
        "densenet",
    )


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_decoder_pair_trains_one_step(encoder, arch, monkeypatch):
    if arch not in DILATED_ARCHS:  # dilating changes the encoder: those builds take a copy
        monkeypatch.setattr(build, "create_encoder", _shared_encoder)
    if arch in DILATED_ARCHS and not _dilatable(encoder):
        with pytest.raises(
            ConfigError, match=f"model.arch={arch} cannot be built on model.encoder={encoder}"
        ):
            build_model("segmentation", arch, encoder, "none")
        return
    net, _ = build_model("multitask", arch, encoder, "none", n_classes=3)
    x = torch.rand(2, 3, 32, 32)  # the smallest input every arch takes (stride 32)
    out = net(x)
    assert out["seg"].shape == (2, 1, 32, 32) and out["cls"].shape == (2, 3)
    first = next(net.encoder.parameters())
    head = [net.seg_head.weight] if hasattr(net.seg_head, "weight") else []
    # backward through every layer to the first encoder weight and the seg head (the other
    # weights' gradients are not computed: nothing here reads them)
    grads = torch.autograd.grad(out["seg"].mean() + out["cls"].mean(), [first, *head])
    assert all(g is not None for g in grads) and grads[0].abs().sum() > 0


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


def test_encoder_none_is_the_classic_four_down_four_up_unet():
    from medtl.models.plain_unet import PlainUNetDecoder, PlainUNetEncoder
    from medtl.models.stages import encoder_stages
    from medtl.models.strategy import apply_strategy

    net, info = build_model("multitask", "unet", "none", "imagenet", n_classes=3, in_channels=1)
    assert isinstance(net.encoder, PlainUNetEncoder) and isinstance(net.decoder, PlainUNetDecoder)
    assert "random init" in info and "no backbone" in info
    pools = [m for m in net.encoder.modules() if isinstance(m, torch.nn.MaxPool2d)]
    ups = [m for m in net.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(pools) == 1 and len(net.encoder.blocks) == 5 and len(ups) == 4  # 4 down, 4 up
    assert net.encoder.out_channels == (64, 128, 256, 512, 1024)
    assert net.mean.item() == 0.5 and net.std.item() == 0.5  # no pretraining: mean/std 0.5
    out = net(torch.rand(2, 1, 48, 48))
    assert out["seg"].shape == (2, 1, 48, 48) and out["cls"].shape == (2, 3)
    out["seg"].mean().backward()
    assert net.encoder.blocks[0][0].weight.grad.abs().sum() > 0
    assert [len(g) for g in encoder_stages(net.encoder)] == [1, 1, 1, 1, 1]
    apply_strategy(net, 2)  # partial: the deepest two levels train
    assert [b[0].weight.requires_grad for b in net.encoder.blocks] == [False] * 3 + [True] * 2
    with pytest.raises(ConfigError, match="needs model.arch=unet"):
        build_model("segmentation", "fpn", "none")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_model("segmentation", "unet", "none", "my.pth")


@pytest.mark.parametrize(
    "normalize, mean, std",
    [("auto", 0.456, 0.224), ("imagenet", 0.456, 0.224), ("half", 0.5, 0.5), ("none", 0.0, 1.0)],
)
def test_model_normalize(normalize, mean, std):
    net, _ = build_model("segmentation", "unet", "resnet18", "none", normalize=normalize)
    assert net.mean.flatten()[1].item() == pytest.approx(mean)
    assert net.std.flatten()[1].item() == pytest.approx(std)


def test_light_arch_is_the_studys_decoder_with_its_logits_as_output():
    net, _ = build_model("segmentation", "light", "mobilenet_v2", "none")
    assert isinstance(net.seg_head, torch.nn.Identity)
    assert sum(p.numel() for p in net.decoder.parameters()) == 8_555_457
    assert net(torch.rand(1, 3, 64, 64))["seg"].shape == (1, 1, 64, 64)
    narrow, _ = build_model(
        "segmentation", "light", "mobilenet_v2", "none", decoder_channels=(8, 8, 8, 8, 8)
    )
    assert narrow.decoder.convs[0].out_channels == 8
    with pytest.raises(ConfigError, match="decoder_channels applies to model.arch=light"):
        build_model("segmentation", "unet", "resnet18", "none", decoder_channels=(8,) * 5)


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_random_vgg_has_torchvision_init_without_building_the_classifier(name):
    """Built on meta then initialised as torchvision's VGG does (its classifier is never made)."""
    torch.manual_seed(0)
    encoder, origin = create_encoder(name, "none")
    assert origin == "random init" and not hasattr(encoder, "classifier")
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
        assert conv.bias is None or not conv.bias.any()
    for bn in (m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert (bn.weight == 1).all() and not bn.bias.any() and (bn.running_var == 1).all()
        assert not bn.running_mean.any() and bn.num_batches_tracked.item() == 0
    torch.manual_seed(0)
    again, _ = create_encoder(name, "none")
    assert torch.equal(convs[0].weight, next(again.parameters()))  # seeded: reproducible


@pytest.mark.parametrize(
    ("task", "arch", "encoder"),
    [
        ("multitask", "unet", "resnet18"),
        ("segmentation", "fcn8", "vgg11"),
        ("multitask", "light", "mobilenet_v2"),
    ],
)
def test_build_loaded_equals_build_then_load_and_draws_no_random_numbers(task, arch, encoder):
    torch.manual_seed(0)
    trained, _ = build_model(task, arch, encoder, "none", n_classes=3)
    trained.eval()
    rng = torch.random.get_rng_state()
    loaded = build.build_loaded(trained.state_dict(), task, arch, encoder, n_classes=3).eval()
    assert torch.equal(torch.random.get_rng_state(), rng)  # no random init happened
    assert not any(t.is_meta for t in loaded.state_dict().values())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want, got = trained(x), loaded(x)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert all(p.requires_grad for p in loaded.parameters())


def test_build_loaded_builds_normally_when_a_buffer_is_in_no_state_dict(monkeypatch):
    real = build.build_model

    def with_extra(*args, **kwargs):
        net, info = real(*args, **kwargs)
        net.register_buffer("extra", torch.full((1,), 7.0), persistent=False)
        return net, info

    trained, _ = real("segmentation", "unet", "resnet18", "none")
    monkeypatch.setattr(build, "build_model", with_extra)
    build._meta_net.cache_clear()  # an earlier test may have kept this network's template
    loaded = build.build_loaded(trained.state_dict(), "segmentation", "unet", "resnet18")
    assert loaded.extra.item() == 7.0
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("arch", ["unet", "fpn"])
def test_templates_kept_for_later_builds_change_no_weight_and_no_random_number(arch):
    """smp's decoder and head (and build_loaded's network) are built on the meta device once
    and copied after: a seeded build with the templates made and one without are equal."""

    def seeded() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        net, _ = build_model("segmentation", arch, "resnet18", "none")
        return net.state_dict(), torch.rand(3)

    build._smp_meta_parts.cache_clear()
    cold, cold_next = seeded()
    assert build._smp_meta_parts.cache_info().currsize == 1
    warm, warm_next = seeded()
    assert build._smp_meta_parts.cache_info().hits >= 1
    assert cold.keys() == warm.keys() and all(torch.equal(cold[k], warm[k]) for k in cold)
    assert torch.equal(cold_next, warm_next)
    template = build._smp_meta_parts(arch, "resnet18", 1)[0]
    assert all(p.is_meta for p in template.parameters())  # builds take copies, never it
    a = build.build_loaded(cold, "segmentation", arch, "resnet18")
    b = build.build_loaded(warm, "segmentation", arch, "resnet18")
    assert a is not b and all(torch.equal(a.state_dict()[k], cold[k]) for k in cold)


def test_build_loaded_rejects_another_networks_weights():
    other, _ = build_model("segmentation", "unet", "resnet34", "none")
    with pytest.raises(RuntimeError, match="state_dict"):
        build.build_loaded(other.state_dict(), "segmentation", "unet", "resnet18")
