"""Decoders: every registered decoder x real smp encoder channel layouts, plus FCN / light specifics."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medtl.models import decoders
from medtl.models.decoders import (
    DECODERS,
    FCN8Decoder,
    FCN16Decoder,
    FCNDecoder,
    LightDecoder,
    bilinear_upsampling,
    build_decoder,
)
from medtl.models.decoders import fcn as fcn_module
from medtl.models.decoders import light as light_module
from medtl.utils.errors import ConfigError

ENCODERS = ["resnet18", "vgg16_bn", "mobilenet_v2", "densenet121"]
SIZE = 64


@pytest.fixture(scope="module")
def encoders() -> dict[str, nn.Module]:
    from segmentation_models_pytorch.encoders import get_encoder

    torch.manual_seed(0)
    return {name: get_encoder(name, weights=None) for name in ENCODERS}


def random_features(channels, size=SIZE, batch=2, seed=0) -> list[torch.Tensor]:
    """Features shaped like smp's list for a ``size`` x ``size`` input (stride 2**i)."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, math.ceil(size / 2**i), math.ceil(size / 2**i), generator=g)
        for i, c in enumerate(channels)
    ]


RESNET18 = (3, 64, 64, 128, 256, 512)


@pytest.mark.parametrize("encoder_name", ENCODERS)
@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
def test_decoder_on_real_encoder_forward_backward(encoders, encoder_name, decoder_name):
    torch.manual_seed(0)
    encoder = encoders[encoder_name]
    encoder.train()
    encoder.zero_grad(set_to_none=True)
    decoder = DECODERS[decoder_name](encoder.out_channels)
    x = torch.randn(2, 3, SIZE, SIZE)
    out = decoder(encoder(x))
    assert out.shape == (2, decoder.out_channels, SIZE, SIZE)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "no gradient reached the encoder"
    first = next(encoder.parameters())  # the stem: gradient must flow through every stage
    assert first.grad is not None and first.grad.abs().sum() > 0
    decoder_grads = [p.grad for p in decoder.parameters() if p.requires_grad]
    assert all(g is not None for g in decoder_grads), "some decoder parameter is unused"


@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
@pytest.mark.parametrize("size", [32, 96])
def test_decoder_other_sizes_multiple_of_32(decoder_name, size):
    decoder = DECODERS[decoder_name](RESNET18).eval()
    with torch.no_grad():
        out = decoder(random_features(RESNET18, size=size))
    assert out.shape == (2, decoder.out_channels, size, size)


@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
def test_decoder_rounded_sizes_are_cropped_or_padded(decoder_name):
    # 100 px: encoders round up to 50, 25, 13, 7, 4 -> upsampled maps must be fitted
    decoder = DECODERS[decoder_name](RESNET18).eval()
    with torch.no_grad():
        out = decoder(random_features(RESNET18, size=100))
    assert out.shape == (2, decoder.out_channels, 100, 100)


def test_no_final_activation():
    # raw score features: both signs, not squashed into (0, 1)
    for name in DECODERS:
        decoder = DECODERS[name](RESNET18).eval()
        with torch.no_grad():
            out = decoder(random_features(RESNET18))
        assert out.min() < 0 < out.max(), name
    for m in FCN8Decoder(RESNET18).modules():
        assert not isinstance(m, (nn.Sigmoid, nn.Softmax))


@pytest.mark.parametrize("factor", [2, 8, 16])
def test_bilinear_upsampling_interpolates(factor):
    up = bilinear_upsampling(3, factor)
    assert up.weight.requires_grad  # learned, only initialised to bilinear
    ones = torch.full((1, 3, 6, 6), 2.5)
    with torch.no_grad():
        y = up(ones)
    assert y.shape == (1, 3, 6 * factor, 6 * factor)
    b = factor  # border band where zero padding pulls values down
    torch.testing.assert_close(y[..., b:-b, b:-b], torch.full_like(y[..., b:-b, b:-b], 2.5))
    # identical to bilinear interpolation (align_corners=False) away from the border,
    # and channels do not mix
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        y = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-5, rtol=1e-5)


def test_fcn_upsamplers_start_bilinear():
    decoder = FCN8Decoder(RESNET18)
    ups = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 3  # two x2 steps + final x8
    assert decoder.up_final.stride == (8, 8)
    for up in ups:
        assert up.bias is None
        ref = bilinear_upsampling(up.in_channels, up.stride[0])
        torch.testing.assert_close(up.weight, ref.weight)
    assert FCN16Decoder(RESNET18).up_final.stride == (16, 16)


def _output(decoder, features):
    with torch.no_grad():
        return decoder(features)


@pytest.mark.parametrize("channels", [RESNET18, (3, 16, 24, 32, 96, 1280)])
def test_fcn8_uses_stride8_and_stride16_features(channels):
    torch.manual_seed(0)
    decoder = FCN8Decoder(channels).eval()
    feats = random_features(channels)
    base = _output(decoder, feats)
    for index in (3, 4):  # stride 8 and stride 16
        zeroed = list(feats)
        zeroed[index] = torch.zeros_like(feats[index])
        assert not torch.allclose(_output(decoder, zeroed), base), f"features[{index}] ignored"
    for index in (1, 2):  # strides 2 and 4 are not part of FCN8
        changed = list(feats)
        changed[index] = torch.randn_like(feats[index])
        torch.testing.assert_close(_output(decoder, changed), base)


@pytest.mark.parametrize("channels", [RESNET18, (3, 16, 24, 32, 96, 1280)])
def test_fcn16_ignores_stride8_features(channels):
    torch.manual_seed(0)
    decoder = FCN16Decoder(channels).eval()
    feats = random_features(channels)
    base = _output(decoder, feats)
    perturbed = list(feats)
    perturbed[3] = torch.randn_like(feats[3]) * 10
    torch.testing.assert_close(_output(decoder, perturbed), base)
    zeroed = list(feats)
    zeroed[4] = torch.zeros_like(feats[4])
    assert not torch.allclose(_output(decoder, zeroed), base), "features[4] ignored"
    assert decoder.skip_indices == [4]
    assert FCN8Decoder(channels).skip_indices == [4, 3]


def test_fcn_subclasses_match_skip_stride():
    assert FCN8Decoder(RESNET18).skip_stride == 8
    assert FCN16Decoder(RESNET18).skip_stride == 16
    custom = FCNDecoder(RESNET18, skip_stride=16, out_channels=4, head_channels=8)
    assert custom.out_channels == 4
    assert custom(random_features(RESNET18)).shape == (2, 4, SIZE, SIZE)


@pytest.mark.parametrize("bad", [4, 32, 0, "8"])
def test_invalid_skip_stride_raises(bad):
    with pytest.raises(ValueError, match=r"\(8, 16\)"):
        FCNDecoder(RESNET18, skip_stride=bad)


def test_fcn_needs_enough_depth():
    with pytest.raises(ValueError, match="depth"):
        FCN8Decoder((3, 64, 64, 128))


def test_wrong_number_of_features_raises():
    for name in DECODERS:
        decoder = DECODERS[name](RESNET18)
        with pytest.raises(ValueError, match="feature maps"):
            decoder(random_features(RESNET18)[1:])


def test_light_decoder_is_the_studys_five_convs_and_five_transposed_convs():
    decoder = LightDecoder((3, 16, 24, 32, 96, 1280))
    convs = [m for m in decoder.modules() if type(m) is nn.Conv2d]
    tconvs = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1280, 64), (64, 128), (128, 256), (256, 512), (512, 512)
    ]  # fmt: skip
    assert [(t.in_channels, t.out_channels) for t in tconvs] == [
        (512, 512), (512, 256), (256, 128), (128, 64), (64, 1)
    ]  # fmt: skip
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert all(t.kernel_size == (3, 3) and t.stride == (2, 2) for t in tconvs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in decoder.modules())
    assert sum(isinstance(m, nn.ReLU) for m in decoder.modules()) == 9  # none after the last
    assert decoder.outputs_logits and decoder.out_channels == 1
    assert sum(p.numel() for p in decoder.parameters()) == 8_555_457
    wide = LightDecoder(RESNET18, out_channels=2, decoder_channels=(8, 8, 16, 16, 32))
    assert [m.out_channels for m in wide.ups if isinstance(m, nn.ConvTranspose2d)] == [
        16, 16, 8, 8, 2
    ]  # fmt: skip


@pytest.mark.parametrize("cls", [LightDecoder])
def test_light_decoder_xavier_init(cls):
    torch.manual_seed(0)
    decoder = cls((3, 16, 24, 32, 96, 1280))
    for m in decoder.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight
            receptive = w[0, 0].numel()
            fan_sum = (w.shape[0] + w.shape[1]) * receptive
            expected = math.sqrt(2.0 / fan_sum)
            bound = math.sqrt(6.0 / fan_sum)
            assert abs(w.std().item() - expected) / expected < 0.1, m
            assert w.abs().max().item() <= bound + 1e-6
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0


@pytest.mark.parametrize("cls", [LightDecoder])
def test_light_decoder_uses_only_deepest_features(cls):
    decoder = cls(RESNET18).eval()
    feats = random_features(RESNET18)
    base = _output(decoder, feats)
    changed = [torch.randn_like(f) for f in feats[:-1]] + [feats[-1]]
    torch.testing.assert_close(_output(decoder, changed), base)


@pytest.mark.parametrize("cls", [LightDecoder])
def test_light_decoder_channels_must_match_stages(cls):
    with pytest.raises(ValueError, match="stage"):
        cls(RESNET18, decoder_channels=(64, 32))


def test_build_decoder_unknown_name_lists_known():
    assert isinstance(build_decoder("light", RESNET18, out_channels=4), LightDecoder)
    with pytest.raises(ConfigError, match="fcn16, fcn8, light"):
        build_decoder("fcn32", RESNET18)


@pytest.mark.parametrize("module", [fcn_module, light_module, decoders])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
