"""Lightweight decoders of the MobileNetV2 transfer-learning study, on any smp encoder.

``light`` (:class:`LightDecoder`) is the study's decoder as it describes it: from the
deepest features only (no skip connections, by design), five 3x3 convolutions with ReLU
that keep the resolution (``in -> 64 -> 128 -> 256 -> 512 -> 512``), then five 3x3
transposed convolutions with stride 2 that mirror them (``512 -> 512 -> 256 -> 128 -> 64
-> classes``), ReLU between them, so stride 32 comes back to stride 1. No BatchNorm.
Every weight is Xavier (Glorot) uniform, biases zero. The last transposed convolution
gives the logits itself (``out_channels = classes``; ``build_model`` adds no 1x1 head):
the study's sigmoid is the one the loss and inference apply to logits.

Why not a BatchNorm variant (conv3x3 -> BatchNorm -> ReLU -> ConvTranspose2d(2, stride 2),
widths 256 ... 16, then a 1x1 head): on 40 seeded 64 px phantoms it ended with a higher
validation loss than this decoder for both seeds tried.

====================  ======  ==================================================
features index        stride  role
====================  ======  ==================================================
``features[5]``       32      decoded by the 5 stages
``features[0..4]``    1..16   unused (``features[0]`` only gives the output size)
====================  ======  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .fcn import fit_to_size

DEFAULT_DECODER_CHANNELS = (64, 128, 256, 512, 512)


def _xavier(module: nn.Module) -> None:
    """Xavier-uniform conv / transposed-conv weights, zero biases (the study's init)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _stage_count(encoder_channels: Sequence[int], decoder_channels: Sequence[int], name: str):
    n_stages = len(encoder_channels) - 1  # one x2 step per encoder stride level
    if len(decoder_channels) != n_stages:
        raise ValueError(
            f"{name} needs one decoder channel count per x2 stage: "
            f"{n_stages} for encoder_channels={tuple(encoder_channels)}, got {decoder_channels}"
        )
    return n_stages


class LightDecoder(nn.Module):
    """The study's decoder: five conv3x3 + ReLU, then five stride-2 transposed conv3x3.

    Args:
        encoder_channels: smp's ``encoder.out_channels`` for depth 5 (six counts,
            ``features[i]`` at stride ``2**i``), e.g. mobilenet_v2
            ``(3, 16, 24, 32, 96, 1280)``; only the last is used.
        out_channels: channels of the output, the logits (``classes``).
        decoder_channels: the five convolutions' widths; the transposed convolutions
            go back through them in reverse and end in ``out_channels``.

    Attributes:
        outputs_logits: True: ``build_model`` uses the output as the logits (no 1x1 head).

    Example:
        >>> import torch
        >>> channels = (3, 16, 24, 32, 96, 1280)  # mobilenet_v2
        >>> decoder = LightDecoder(channels)
        >>> [m.out_channels for m in decoder.convs if isinstance(m, nn.Conv2d)]
        [64, 128, 256, 512, 512]
        >>> [m.out_channels for m in decoder.ups if isinstance(m, nn.ConvTranspose2d)]
        [512, 256, 128, 64, 1]
        >>> sum(p.numel() for p in decoder.parameters())
        8555457
        >>> feats = [torch.randn(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate(channels)]
        >>> tuple(decoder(feats).shape)  # from features[5] alone, back to stride 1
        (2, 1, 64, 64)
    """

    outputs_logits = True

    def __init__(
        self,
        encoder_channels: Sequence[int],
        out_channels: int = 1,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    ) -> None:
        super().__init__()
        encoder_channels = tuple(int(c) for c in encoder_channels)
        widths = tuple(int(c) for c in decoder_channels)
        n_stages = _stage_count(encoder_channels, widths, "LightDecoder")
        self.encoder_channels = encoder_channels
        self.out_channels = out_channels
        convs: list[nn.Module] = []
        for c_in, c_out in zip((encoder_channels[-1], *widths[:-1]), widths, strict=True):
            convs += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
        ups: list[nn.Module] = []
        back = widths[::-1]
        for i, c_in in enumerate(back):
            last = i == n_stages - 1
            c_out = out_channels if last else back[i + 1]
            # kernel 3, padding 1, output_padding 1: exactly x2 (H -> 2H)
            ups.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1))
            if not last:
                ups.append(nn.ReLU(inplace=True))
        self.convs = nn.Sequential(*convs)
        self.ups = nn.Sequential(*ups)
        _xavier(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Return ``(N, out_channels, H, W)`` logits from the deepest map of the feature list."""
        _check_features(features, self.encoder_channels)
        return fit_to_size(self.ups(self.convs(features[-1])), features[0].shape[-2:])


def _check_features(features: list[Tensor], encoder_channels: tuple[int, ...]) -> None:
    if len(features) != len(encoder_channels):
        raise ValueError(
            f"expected {len(encoder_channels)} feature maps (encoder_channels="
            f"{encoder_channels}), got {len(features)}"
        )
