"""The classic U-Net without a backbone (``model.encoder=none``): 4 down, 4 up, from scratch.

Ronneberger et al.'s architecture as PyTorch users usually write it: each level is two
3x3 convolutions (padding 1, BatchNorm, ReLU); four 2x2 max-pools take 64 channels at
stride 1 to 1024 at stride 16; four 2x2 transposed convolutions come back up, each
followed by concatenation with the skip at that stride and two 3x3 convolutions. It is
the "no-pretrain UNet" row of the ResNet18-UNet study. Split into medtl's
``encoder -> decoder -> seg_head`` so that strategies, feature caching and export treat it
like any other network; the encoder's five levels are its five stages for freezing.

=============  ======  ========
feature index  stride  channels
=============  ======  ========
0              1       64
1              2       128
2              4       256
3              8       512
4              16      1024
=============  ======  ========

Example:
    >>> import torch
    >>> encoder = PlainUNetEncoder(in_channels=3)
    >>> decoder = PlainUNetDecoder(encoder.out_channels)
    >>> tuple(decoder(encoder(torch.rand(1, 3, 32, 32))).shape)
    (1, 64, 32, 32)
    >>> sum(p.numel() for p in (*encoder.parameters(), *decoder.parameters()))
    31037568
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """(conv3x3 -> BatchNorm -> ReLU) x 2; the conv bias is dropped (BatchNorm shifts)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class PlainUNetEncoder(nn.Module):
    """The contracting path: ``forward(x)`` returns the five maps of the table above."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5:
            raise ValueError(f"the plain U-Net has 5 levels; got widths {widths}")
        self.out_channels = widths
        ins = (in_channels, *widths[:-1])
        self.blocks = nn.ModuleList(double_conv(i, o) for i, o in zip(ins, widths, strict=True))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class PlainUNetDecoder(nn.Module):
    """The expanding path: up x2, concatenate the skip, two 3x3 convs; four times."""

    def __init__(self, encoder_channels: Sequence[int]) -> None:
        super().__init__()
        chans = tuple(int(c) for c in encoder_channels)
        self.out_channels = chans[0]
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], kernel_size=2, stride=2)
            for i in reversed(range(len(chans) - 1))
        )
        self.blocks = nn.ModuleList(
            double_conv(2 * chans[i], chans[i]) for i in reversed(range(len(chans) - 1))
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(features[:-1]), strict=True):
            x = up(x)
            x = block(torch.cat([skip, x], dim=1))
        return x


def plain_unet_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    """The encoder's five levels as the five stages of ``model.strategy=partial``."""
    return [[block] for block in encoder.blocks]
