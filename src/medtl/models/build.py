"""``build_model(cfg)`` -> :class:`Net`: encoder -> decoder -> seg_head, plus optional cls_head.

Decoders come from one registry: segmentation-models-pytorch's architectures (unet,
unetplusplus, fpn, deeplabv3plus, linknet) and medtl's own (fcn8, fcn16, light). The
input normalisation of the encoder's pretraining lives inside the model, so the model
takes float images in [0, 1] everywhere (training, evaluation, export, predict).
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
from collections.abc import Callable, Mapping, Sequence

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.base import initialization as smp_init
from torch import nn

from medtl.models.decoders import DECODERS as OWN_DECODERS
from medtl.models.encoders import create_encoder
from medtl.models.plain_unet import PlainUNetDecoder, PlainUNetEncoder
from medtl.models.registry import IMAGENET_MEAN, IMAGENET_STD, get_encoder_spec
from medtl.utils.errors import ConfigError

SMP_ARCHS: dict[str, str] = {
    "unet": "unet",
    "unetplusplus": "unetplusplus",
    "fpn": "fpn",
    "deeplabv3plus": "deeplabv3plus",
    "linknet": "linknet",
}

DILATED_ARCHS: dict[str, int] = {"deeplabv3plus": 16}


def _smp_parts(arch: str) -> Callable[[nn.Module, str, int], tuple[nn.Module, nn.Module]]:
    def build(encoder: nn.Module, smp_name: str, classes: int) -> tuple[nn.Module, nn.Module]:
        if arch in DILATED_ARCHS:  # DeepLabV3+ expects an output-stride-16 (dilated) encoder
            if not hasattr(encoder, "make_dilated"):
                raise ValueError(f"{type(encoder).__name__} cannot be dilated to output stride 16")
            encoder.make_dilated(DILATED_ARCHS[arch])
        # copies of smp's decoder and head on the meta device, materialised and initialised
        # exactly as smp does (defaults, then its init)
        device = torch.get_default_device()  # meta inside build_loaded: no init at all
        decoder, head = (
            copy.deepcopy(part).to_empty(device=device)
            for part in _smp_meta_parts(arch, smp_name, classes)
        )
        for module in (*decoder.modules(), *head.modules()):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        smp_init.initialize_decoder(decoder)
        smp_init.initialize_head(head)
        return decoder, head

    return build


@functools.cache
def _smp_meta_parts(arch: str, smp_name: str, classes: int) -> tuple[nn.Module, nn.Module]:
    """smp's decoder and segmentation head of ``arch`` for ``smp_name``, on the meta device,
    built once per process: smp builds its own encoder with them, which medtl replaces (on
    meta, to skip its random init, which takes seconds for VGG on a CPU); later builds take
    a copy, which is cheaper than building them again. Meta tensors draw no
    random numbers: a seeded build gives the same weights and generator state either way."""
    with torch.device("meta"):
        model = smp.create_model(
            SMP_ARCHS[arch], encoder_name=smp_name, encoder_weights=None, classes=classes
        )
    return model.decoder, model.segmentation_head


def _own_parts(arch: str) -> Callable[..., tuple[nn.Module, nn.Module]]:
    def build(
        encoder: nn.Module, smp_name: str, classes: int, **kwargs: object
    ) -> tuple[nn.Module, nn.Module]:
        factory = OWN_DECODERS[arch]
        if getattr(factory, "outputs_logits", False):  # e.g. light: its last layer is the head
            return factory(
                tuple(encoder.out_channels), out_channels=classes, **kwargs
            ), nn.Identity()
        decoder = factory(tuple(encoder.out_channels), **kwargs)
        return decoder, nn.Conv2d(decoder.out_channels, classes, kernel_size=1)

    return build


#: archs whose decoder widths ``model.decoder_channels`` sets
WIDTH_ARCHS = tuple(
    name
    for name, f in OWN_DECODERS.items()
    if "decoder_channels" in inspect.signature(f).parameters
)

#: ``model.normalize`` -> (mean, std) of the input; ``auto`` = what the encoder was trained with
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


ARCHS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    **{name: _smp_parts(name) for name in SMP_ARCHS},
    **{name: _own_parts(name) for name in OWN_DECODERS},
}


class ClassificationHead(nn.Module):
    """Global average pooling -> dropout -> linear, on the deepest encoder features.

    The layers of smp's ``aux_params`` head (``segmentation_models_pytorch.base.heads.
    ClassificationHead``), kept here because that head differs where it matters: smp's
    models initialise it Xavier-uniform with zero bias (this one keeps PyTorch's default
    ``nn.Linear`` init, so a seeded run's numbers would change), and its state-dict keys are
    ``3.weight``/``3.bias`` where every saved ``model.pt`` and checkpoint holds
    ``fc.weight``/``fc.bias``."""

    def __init__(self, in_channels: int, classes: int, dropout: float = 0.2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class Net(nn.Module):
    """``encoder -> decoder -> seg_head`` and/or ``encoder -> cls_head``.

    ``forward(x)`` takes ``(N, 3, H, W)`` float images in [0, 1] (H, W multiples of 32) and
    returns ``{"seg": (N, classes, H, W) logits, "cls": (N, n_classes) logits}`` with the
    keys the task has. ``frozen_modules`` are kept in eval mode by ``train()``, so a frozen
    encoder's BatchNorm statistics never change.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | None,
        seg_head: nn.Module | None,
        cls_head: nn.Module | None,
        mean: Sequence[float],
        std: Sequence[float],
        in_channels: int = 3,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.seg_head = seg_head
        self.cls_head = cls_head
        self.in_channels = in_channels
        if in_channels == 1:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.frozen_modules: list[nn.Module] = []

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        return (x - self.mean) / self.std

    def heads(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decoder and heads on precomputed encoder features (used by feature caching too)."""
        out: dict[str, torch.Tensor] = {}
        if self.decoder is not None and self.seg_head is not None:
            out["seg"] = self.seg_head(self.decoder(features))
        if self.cls_head is not None:
            out["cls"] = self.cls_head(features[-1])
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.encoder(self.normalise(x)))

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        for m in self.frozen_modules:
            m.eval()
        return self


def build_model(
    task: str,
    arch: str,
    encoder: str,
    weights: str = "none",
    n_classes: int = 0,
    seg_classes: int = 1,
    in_channels: int = 3,
    dropout: float = 0.2,
    normalize: str = "auto",
    decoder_channels: Sequence[int] | None = None,
) -> tuple[Net, str]:
    """Build the network for ``task``; returns ``(net, weights description)``.

    ``encoder="none"`` is the classic U-Net without a backbone (arch ``unet`` only,
    random init); ``normalize`` is ``auto`` (the encoder's pretraining statistics;
    mean/std 0.5 without an encoder), ``imagenet``, ``half`` or ``none``;
    ``decoder_channels`` sets the widths of the archs in :data:`WIDTH_ARCHS`.

    Example::

        net, info = build_model("multitask", "unet", "resnet18", "none", n_classes=3)
        out = net(torch.rand(2, 3, 64, 64))  # out["seg"]: (2,1,64,64), out["cls"]: (2,3)
    """
    if task != "classification" and arch not in ARCHS:
        from medtl.utils.formatting import suggest as _suggest

        raise ConfigError(
            f"unknown model.arch '{arch}'{_suggest(arch, list(ARCHS))} known: {', '.join(ARCHS)}"
        )
    if decoder_channels is not None and arch not in WIDTH_ARCHS:
        raise ConfigError(
            f"model.decoder_channels applies to model.arch={' or '.join(WIDTH_ARCHS)}, not {arch}; "
            "remove it"
        )
    if encoder == "none":
        enc, info, mean, std = _plain_encoder(task, arch, weights, in_channels)
    else:
        spec = get_encoder_spec(encoder)
        enc, info = create_encoder(encoder, weights=weights, in_channels=in_channels)
        mean, std = spec.mean, spec.std
    if normalize != "auto":
        mean, std = NORMALIZATIONS[normalize]
    decoder = seg_head = cls_head = None
    if task in ("segmentation", "multitask"):
        smp_name = None if encoder == "none" else spec.smp_name
        decoder, seg_head = _seg_parts(arch, encoder, enc, smp_name, seg_classes, decoder_channels)
    if task in ("classification", "multitask"):
        if n_classes < 2:
            raise ConfigError(
                f"task={task} needs at least 2 classes, found {n_classes}; use class folders"
            )
        cls_head = ClassificationHead(enc.out_channels[-1], n_classes, dropout)
    net = Net(enc, decoder, seg_head, cls_head, mean, std, in_channels)
    return net, info


@functools.cache
def _meta_net(task: str, arch: str, encoder: str, kwargs: tuple[tuple[str, object], ...]) -> Net:
    """:func:`build_model`'s network on the meta device, built once per process:
    :func:`build_loaded` copies it instead of building the network again, several times
    faster for a ResNet18- or EfficientNet-Lite0-UNet."""
    with torch.device("meta"):
        net, _ = build_model(task, arch, encoder, "none", **dict(kwargs))  # type: ignore[arg-type]
    return net


def build_loaded(
    state_dict: Mapping[str, torch.Tensor], task: str, arch: str, encoder: str, **kwargs: object
) -> Net:
    """The network :func:`build_model` builds (``weights="none"``; the other arguments as
    there) holding ``state_dict``'s tensors, without the random init a strict load would
    overwrite anyway: built on the meta device, then the tensors taken over (strict, made
    contiguous). A network with buffers no state dict holds is built and loaded normally.
    Raises RuntimeError for the keys or shapes of another network, as ``load_state_dict``."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    net = copy.deepcopy(_meta_net(task, arch, encoder, key))
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    net.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in itertools.chain(net.parameters(), net.buffers())):
        net, _ = build_model(task, arch, encoder, "none", **kwargs)  # type: ignore[arg-type]
        net.load_state_dict(state_dict, strict=True)
    return net


def _seg_parts(
    arch: str,
    encoder: str,
    enc: nn.Module,
    smp_name: str | None,
    classes: int,
    decoder_channels: Sequence[int] | None,
) -> tuple[nn.Module, nn.Module]:
    """Decoder and seg head of ``arch`` on ``enc``; impossible pairs are a ConfigError."""
    kwargs = {} if decoder_channels is None else {"decoder_channels": tuple(decoder_channels)}
    try:
        if smp_name is None:  # model.encoder=none
            decoder = PlainUNetDecoder(enc.out_channels)
            return decoder, nn.Conv2d(decoder.out_channels, classes, kernel_size=1)
        return ARCHS[arch](enc, smp_name, classes, **kwargs)
    except (ValueError, RuntimeError, KeyError, AttributeError, AssertionError) as exc:
        raise ConfigError(
            f"model.arch={arch} cannot be built on model.encoder={encoder} ({exc}); "
            f"pick another arch (e.g. unet) or encoder"
        ) from None


def _plain_encoder(
    task: str, arch: str, weights: str, in_channels: int
) -> tuple[nn.Module, str, tuple[float, ...], tuple[float, ...]]:
    """``model.encoder=none``: the plain U-Net's contracting path, from scratch."""
    if task != "classification" and arch != "unet":
        raise ConfigError(
            f"model.encoder=none is the classic U-Net; it needs model.arch=unet, not {arch}"
        )
    if str(weights).lower() not in ("none", "imagenet", ""):
        raise ConfigError(
            f"model.encoder=none has no pretrained weights; remove model.weights={weights}"
        )
    mean, std = NORMALIZATIONS["half"]
    return PlainUNetEncoder(in_channels), "random init (model.encoder=none: no backbone)", mean, std


#: archs whose decoders need the input side to be a multiple of the encoder's stride 32:
#: they add (fpn, linknet) or concatenate (unetplusplus) maps of neighbouring strides
#: without cropping, so at 48 or 80 px a 2x2 map meets a 3x3 one and the forward fails.
#: Every other arch takes every multiple of 16 (probed at 48, 80, 112 px on resnet18,
#: vgg11_bn and tu-convnext_atto; tests/models/test_build.py).
SIZE_MULTIPLE: dict[str, int] = {"fpn": 32, "linknet": 32, "unetplusplus": 32}


def check_image_size(task: str, arch: str, size: int) -> None:
    """Raise a one-line ConfigError when ``arch`` cannot segment ``size`` x ``size`` images."""
    multiple = SIZE_MULTIPLE.get(arch, 16)
    if task != "classification" and size % multiple:
        lower = max(multiple, size // multiple * multiple)
        raise ConfigError(
            f"model.arch={arch} needs data.image_size to be a multiple of {multiple}, got {size}; "
            f"use data.image_size={lower} or {lower + multiple}, or model.arch=unet"
        )


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
