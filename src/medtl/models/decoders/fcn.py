"""FCN8 / FCN16 decoders (Long, Shelhamer & Darrell, 2015) on any smp encoder.

The decoder follows the FCN "skip" architecture, but on the stages of an arbitrary
segmentation-models-pytorch encoder instead of VGG's pool layers:

====================  ======  =========================================================
features index        stride  role
====================  ======  =========================================================
``features[5]``       32      "fc6/fc7" head -> ``out_channels`` score features
``features[4]``       16      1x1 score layer, added after a learned x2 upsampling (FCN16, FCN8)
``features[3]``       8       1x1 score layer, added after a learned x2 upsampling (FCN8 only)
``features[0..2]``    1,2,4   unused (``features[0]`` only gives the output size)
====================  ======  =========================================================

The fused map is brought back to full resolution by a learned x16 (FCN16) or x8 (FCN8)
upsampling. Every upsampling is a ``ConvTranspose2d`` initialised to bilinear
interpolation, channel by channel, exactly as in the original FCN (it equals
``F.interpolate(..., mode="bilinear", align_corners=False)`` away from the border).

Deviation from the paper, on purpose: the score maps are ``out_channels`` (default 32)
*score features*, not class logits, because medtl always appends
``seg_head = nn.Conv2d(decoder.out_channels, classes, 1)`` to every decoder. Everything
after the head is linear (1x1 scores, bilinear-initialised upsampling, addition), so
``seg_head`` composed with the decoder is an FCN whose scores are a learned linear
mix of ``out_channels`` maps; with ``out_channels=classes`` and an identity seg_head
it is the original network. No sigmoid or softmax is applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SKIP_STRIDES = (8, 16)


def bilinear_kernel(kernel_size: int) -> Tensor:
    """Return the 2D bilinear interpolation kernel of FCN's ``upsample_filt`` (k x k)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    return filt[:, None] * filt[None, :]


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Return a learnable ``ConvTranspose2d`` that upsamples by ``factor``, bilinear at init.

    Kernel ``2*factor - factor % 2``, stride ``factor``, padding ``ceil((factor-1)/2)``,
    so an ``(N, C, H, W)`` input gives exactly ``(N, C, factor*H, factor*W)``. Channel
    ``i`` maps only to channel ``i`` at init (zero off-diagonal weights), no bias.

    Example:
        >>> up = bilinear_upsampling(2, 2)
        >>> y = up(torch.ones(1, 2, 4, 4))
        >>> tuple(y.shape), round(y[0, 0, 2:-2, 2:-2].min().item(), 6)
        ((1, 2, 8, 8), 1.0)
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    kernel_size = 2 * factor - factor % 2
    padding = factor // 2  # == ceil((factor - 1) / 2)
    up = nn.ConvTranspose2d(
        channels, channels, kernel_size, stride=factor, padding=padding, bias=False
    )
    with torch.no_grad():
        up.weight.zero_()
        kernel = bilinear_kernel(kernel_size)
        for c in range(channels):
            up.weight[c, c] = kernel
    return up


def fit_to_size(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop (bottom/right) or replicate-pad ``x`` so that its spatial size is ``size``.

    Sizes differ only by rounding when an input side is not a multiple of 32; the
    top-left alignment matches the transposed convolutions (pixel ``i`` of the
    upsampled map sits over pixel ``i`` of the finer one).
    """
    h, w = int(size[0]), int(size[1])
    x = x[..., :h, :w]
    pad_h, pad_w = h - x.shape[-2], w - x.shape[-1]
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, max(pad_w, 0), 0, max(pad_h, 0)), mode="replicate")
    return x


class FCNDecoder(nn.Module):
    """FCN skip decoder: deepest-stage head + score layers at stride 16 (and 8).

    Args:
        encoder_channels: smp's ``encoder.out_channels`` for depth 5, six counts where
            ``encoder_channels[i]`` is the channel count of ``features[i]`` (stride
            ``2**i``), e.g. resnet18 ``(3, 64, 64, 128, 256, 512)``, mobilenet_v2
            ``(3, 16, 24, 32, 96, 1280)``. Only the last three are used.
        skip_stride: finest stride fused before the final upsampling: 16 gives FCN16
            (skip from ``features[4]``, then x16), 8 gives FCN8 (skips from
            ``features[4]`` and ``features[3]``, then x8).
        out_channels: width of the score features (and of the output).
        head_channels: width of the "fc6/fc7"-like 3x3 conv on the deepest features.
        dropout: dropout probability in the head (FCN used 0.5 after fc6/fc7).

    Shapes (input ``(N, 3, H, W)``, ``H`` and ``W`` multiples of 32):
        ``forward(features)`` takes the list returned by the smp encoder,
        ``features[i]: (N, encoder_channels[i], H / 2**i, W / 2**i)``, and returns
        ``(N, out_channels, H, W)``: stride 1, no activation.

    Example:
        >>> import torch
        >>> channels = (3, 64, 64, 128, 256, 512)  # resnet18
        >>> feats = [torch.randn(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate(channels)]
        >>> decoder = FCNDecoder(channels, skip_stride=8)
        >>> tuple(decoder(feats).shape)
        (2, 32, 64, 64)
        >>> seg_head = torch.nn.Conv2d(decoder.out_channels, 1, 1)  # what build_model adds
        >>> tuple(seg_head(decoder(feats)).shape)
        (2, 1, 64, 64)
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        skip_stride: int = 8,
        out_channels: int = 32,
        head_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if skip_stride not in SKIP_STRIDES:
            raise ValueError(
                f"FCN skip_stride must be one of {SKIP_STRIDES} (FCN8 or FCN16), got {skip_stride!r}"
            )
        encoder_channels = tuple(int(c) for c in encoder_channels)
        deepest = len(encoder_channels) - 1
        finest = skip_stride.bit_length() - 1  # log2(skip_stride): index of the finest skip
        if deepest <= finest:
            raise ValueError(
                f"FCN{skip_stride} needs encoder features down to stride {2 * skip_stride} "
                f"(encoder depth >= {finest + 1}), got encoder_channels={encoder_channels}"
            )
        self.encoder_channels = encoder_channels
        self.skip_stride = skip_stride
        self.out_channels = out_channels
        # feature indices fused by addition, coarse to fine (e.g. [4, 3] for FCN8)
        self.skip_indices = list(range(deepest - 1, finest - 1, -1))

        self.head = nn.Sequential(
            nn.Conv2d(encoder_channels[deepest], head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(head_channels, out_channels, 1),
        )
        self.score = nn.ModuleList(
            nn.Conv2d(encoder_channels[i], out_channels, 1) for i in self.skip_indices
        )
        self.up2 = nn.ModuleList(bilinear_upsampling(out_channels, 2) for _ in self.skip_indices)
        self.up_final = bilinear_upsampling(out_channels, skip_stride)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Return ``(N, out_channels, H, W)`` score features from the smp feature list."""
        if len(features) != len(self.encoder_channels):
            raise ValueError(
                f"expected {len(self.encoder_channels)} feature maps (encoder_channels="
                f"{self.encoder_channels}), got {len(features)}"
            )
        x = self.head(features[-1])
        for index, score, up in zip(self.skip_indices, self.score, self.up2, strict=True):
            skip = score(features[index])
            x = fit_to_size(up(x), skip.shape[-2:]) + skip
        return fit_to_size(self.up_final(x), features[0].shape[-2:])


class _FixedStrideFCN(FCNDecoder):
    """:class:`FCNDecoder` with ``skip_stride`` fixed by the subclass (FCN16, FCN8)."""

    fixed_skip_stride: int

    def __init__(
        self,
        encoder_channels: Sequence[int],
        out_channels: int = 32,
        head_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(
            encoder_channels, self.fixed_skip_stride, out_channels, head_channels, dropout
        )


class FCN16Decoder(_FixedStrideFCN):
    """:class:`FCNDecoder` with ``skip_stride=16``: fuses the stride-16 features, then x16."""

    fixed_skip_stride = 16


class FCN8Decoder(_FixedStrideFCN):
    """:class:`FCNDecoder` with ``skip_stride=8``: fuses stride-16 and stride-8, then x8."""

    fixed_skip_stride = 8
