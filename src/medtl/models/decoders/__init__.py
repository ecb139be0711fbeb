"""Decoders that segmentation-models-pytorch lacks, in one registry looked up by name.

Every entry is called as ``DECODERS[name](encoder.out_channels, **kwargs)`` and returns
an ``nn.Module`` with an ``out_channels`` attribute whose ``forward(features)`` maps
smp's feature list (``features[i]`` at stride ``2**i``) to an
``(N, out_channels, H, W)`` map at full input resolution, with no activation. The model
builder appends ``seg_head = nn.Conv2d(decoder.out_channels, classes, 1)``, unless the
class says ``outputs_logits = True`` (then it is built with ``out_channels=classes`` and
its output is the logits).

Example:
    >>> import torch
    >>> from segmentation_models_pytorch.encoders import get_encoder
    >>> encoder = get_encoder("resnet18", weights=None)
    >>> decoder = build_decoder("fcn8", encoder.out_channels)
    >>> tuple(decoder(encoder(torch.randn(2, 3, 64, 64))).shape)
    (2, 32, 64, 64)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from medtl.utils.errors import ConfigError

from .fcn import FCN8Decoder, FCN16Decoder, FCNDecoder, bilinear_upsampling
from .light import LightDecoder

DECODERS: dict[str, Callable[..., nn.Module]] = {
    "fcn8": FCN8Decoder,
    "fcn16": FCN16Decoder,
    "light": LightDecoder,
}


def build_decoder(name: str, encoder_channels: Sequence[int], **kwargs: Any) -> nn.Module:
    """Return ``DECODERS[name](encoder_channels, **kwargs)``; unknown names list the known ones."""
    try:
        factory = DECODERS[name]
    except KeyError:
        known = ", ".join(sorted(DECODERS))
        raise ConfigError(f"unknown decoder {name!r}; known decoders: {known}") from None
    return factory(encoder_channels, **kwargs)


__all__ = [
    "DECODERS",
    "FCN8Decoder",
    "FCN16Decoder",
    "FCNDecoder",
    "LightDecoder",
    "bilinear_upsampling",
    "build_decoder",
]
