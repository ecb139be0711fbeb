"""Encoder stages: an encoder's modules in 5 groups, shallow to deep, for partial unfreezing.

``model.strategy=partial`` unfreezes "the last K stages", ``encoder_stages(e)[-K:]``. Each
smp encoder class has its own split (looked up along the class's MRO); timm encoders are
split by the modules their feature maps are tapped from.

Example:
    >>> from medtl.models.encoders import create_encoder
    >>> encoder, _ = create_encoder("resnet18", weights="none")
    >>> [len(group) for group in encoder_stages(encoder)]  # conv1+bn1, then layer1..4
    [2, 1, 1, 1, 1]
"""

from __future__ import annotations

import math
from collections.abc import Callable

from segmentation_models_pytorch.encoders.densenet import DenseNetEncoder
from segmentation_models_pytorch.encoders.mobilenet import MobileNetV2Encoder
from segmentation_models_pytorch.encoders.resnet import ResNetEncoder
from segmentation_models_pytorch.encoders.timm_universal import TimmUniversalEncoder
from segmentation_models_pytorch.encoders.vgg import VGGEncoder
from torch import nn

from medtl.models.plain_unet import PlainUNetEncoder, plain_unet_stages


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
    PlainUNetEncoder: plain_unet_stages,
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
