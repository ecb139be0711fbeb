"""Encoders: build one (random, or pretrained weights read from disk), its channels, the listing.

Which encoders exist is :mod:`medtl.models.registry`; their stages for partial unfreezing
are :mod:`medtl.models.stages`. Every encoder is a segmentation-models-pytorch encoder whose ``forward(x)`` returns six
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
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from medtl.models.registry import ENCODERS, TIMM_PREFIX, EncoderSpec, get_encoder_spec
from medtl.models.weight_keys import map_state_dict
from medtl.models.weights import (
    check_sha256,
    find_pretrained,
    is_weights_path,
    load_state_dict_file,
    load_strict,
    resolve_weights,
)
from medtl.utils.errors import ConfigError, WeightsError


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


def _random_encoder(spec: EncoderSpec, in_channels: int, depth: int) -> nn.Module:
    """A randomly initialised encoder. VGG is built on meta and given torchvision's VGG init
    (convolutions Kaiming-normal fan-out, BatchNorm 1/0) on the layers it keeps: built
    normally, torchvision first initialises the 120M-parameter classifier that smp deletes
    (most of a VGG16-BN-UNet's build time). Same distribution, another random draw."""
    if spec.family != "vgg":
        return _smp_encoder(spec, in_channels, depth, weights=None)
    with torch.device("meta"):
        encoder = _smp_encoder(spec, in_channels, depth, weights=None)
    encoder = encoder.to_empty(device=torch.get_default_device())  # meta in build_loaded
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
    return encoder


def _load_smp(spec: EncoderSpec, sd: dict, path: Path, depth: int) -> nn.Module:
    encoder = _uninitialised_encoder(spec, 5)
    load_strict(encoder, map_state_dict(spec, sd), path)
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


# family -> how a pretrained state_dict becomes an encoder (key maps: weight_keys.MAPPERS).
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
        return _random_encoder(spec, in_channels, depth), "random init"
    path = resolve_weights(spec, weights)
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
def _meta_facts(name: str, in_channels: int) -> tuple[tuple[int, ...], int]:
    """Feature-map channels and parameter count of ``name``, from one build on the meta
    device (no memory, no weights), cached: ``medtl models`` asks for both of every encoder."""
    with torch.device("meta"):
        encoder = _smp_encoder(get_encoder_spec(name), in_channels, 5, weights=None)
    channels = tuple(int(c) for c in encoder.out_channels)
    return channels, sum(p.numel() for p in encoder.parameters())


def encoder_channels(name: str, in_channels: int = 3) -> tuple[int, ...]:
    """Channels of the six feature maps of ``name`` (smp convention, input included).

    Built once on the meta device (no memory, no weights) and cached.
    """
    return _meta_facts(name, in_channels)[0]


def encoder_param_count(name: str) -> int:
    """Number of parameters of encoder ``name`` (3 input channels), built on meta, cached."""
    return _meta_facts(name, 3)[1]


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
