"""Lightweight decoder of the MobileNetV2 transfer-learning study, on any smp encoder.

The study paired a MobileNetV2 encoder with a deliberately small decoder: from the
deepest features only (no skip connections, by design), five stages of

    conv3x3 -> BatchNorm -> ReLU -> ConvTranspose2d(kernel 2, stride 2)

each doubling the resolution, so stride 32 comes back to stride 1 after five stages.
Channels halve stage by stage (256, 128, 64, 32, 16 by default); the last transposed
convolution outputs ``out_channels``. All conv and transposed-conv weights are
Xavier (Glorot) uniform, biases zero. The study's final sigmoid is *not* here: medtl
appends ``seg_head = nn.Conv2d(out_channels, classes, 1)`` and the loss / inference
code turns logits into probabilities.

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

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class LightDecoder(nn.Module):
    """Five (conv3x3 + BN + ReLU, ConvTranspose2d x2) stages on the deepest features.

    Args:
        encoder_channels: smp's ``encoder.out_channels`` for depth 5, six counts where
            ``encoder_channels[i]`` is the channel count of ``features[i]`` (stride
            ``2**i``), e.g. mobilenet_v2 ``(3, 16, 24, 32, 96, 1280)``. Only the last is
            used. Its length minus one is the number of x2 stages.
        out_channels: channels of the output (of the last transposed convolution).
        decoder_channels: output channels of each stage's 3x3 conv; one per stage.

    Shapes: as :class:`~medtl.models.decoders.fcn.FCNDecoder`'s, the smp feature list in
    (``H``, ``W`` multiples of 32), ``(N, out_channels, H, W)`` out, with no activation.

    Example:
        >>> import torch
        >>> channels = (3, 16, 24, 32, 96, 1280)  # mobilenet_v2
        >>> decoder = LightDecoder(channels)
        >>> [stage[0].out_channels for stage in decoder.stages]  # the 3x3 convs, halving
        [256, 128, 64, 32, 16]
        >>> feats = [torch.randn(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate(channels)]
        >>> tuple(decoder(feats).shape)  # from features[5] alone, back to stride 1
        (2, 16, 64, 64)
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        out_channels: int = 16,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    ) -> None:
        super().__init__()
        encoder_channels = tuple(int(c) for c in encoder_channels)
        decoder_channels = tuple(int(c) for c in decoder_channels)
        n_stages = len(encoder_channels) - 1  # one x2 step per encoder stride level
        if len(decoder_channels) != n_stages:
            raise ValueError(
                f"LightDecoder needs one decoder channel count per x2 stage: "
                f"{n_stages} for encoder_channels={encoder_channels}, got {decoder_channels}"
            )
        self.encoder_channels = encoder_channels
        self.out_channels = out_channels

        stages = []
        in_ch = encoder_channels[-1]
        for i, ch in enumerate(decoder_channels):
            up_out = out_channels if i == n_stages - 1 else ch
            stages.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, ch, 3, padding=1, bias=False),  # BN supplies the shift
                    nn.BatchNorm2d(ch),
                    nn.ReLU(inplace=True),
                    nn.ConvTranspose2d(ch, up_out, kernel_size=2, stride=2),
                )
            )
            in_ch = up_out
        self.stages = nn.Sequential(*stages)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv / transposed-conv weights, zero biases (the study's init)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Return ``(N, out_channels, H, W)`` from the deepest map of the smp feature list."""
        if len(features) != len(self.encoder_channels):
            raise ValueError(
                f"expected {len(self.encoder_channels)} feature maps (encoder_channels="
                f"{self.encoder_channels}), got {len(features)}"
            )
        return fit_to_size(self.stages(features[-1]), features[0].shape[-2:])
