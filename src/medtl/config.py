"""Typed configuration: dataclass schema, YAML loading, Hydra-style ``key=value`` overrides.

Every value is checked against its field's type and, for names, against the registry of
allowed choices; a mistyped key or value raises :class:`~medtl.errors.ConfigError` naming
the key and suggesting the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from medtl.errors import ConfigError

TASKS = ("segmentation", "classification", "multitask")
AUGMENTS = ("none", "light", "standard")
STRATEGIES = ("frozen", "finetune", "partial", "two_stage")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULERS = ("none", "cosine", "plateau")
SEG_LOSSES = ("bce", "dice", "dice_bce", "focal", "ce", "dice_ce")  # ce = bce for one label
CLS_LOSSES = ("ce", "focal")
EMPTY_MASK_RULES = ("one", "skip", "zero")
LOGGERS = ("csv", "tensorboard", "mlflow")
NORMALIZATIONS = ("auto", "imagenet", "half", "none")


@dataclass
class DataConfig:
    """Where the images are and how they become tensors."""

    root: str | None = None
    layout: str = "auto"
    classes: str | None = None
    image_size: int = 128
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    augment: str = "light"
    augment_copies: int = 0  # K: each training image 1 + K times an epoch ("7x the data" = 6)
    workers: int = 0
    cache: str = "memory"  # decoded rows: memory | disk (memory-mapped, reused) | none (stream)
    cache_dir: str | None = None  # data.cache=disk folder; None: $MEDTL_CACHE_DIR, ~/.cache/medtl
    group_duplicates: bool = True
    in_memory_limit_mb: int = 4096
    max_pixels: int = 150_000_000  # images above this are refused from their header
    window: str | None = None  # DICOM/volume VOI window "C,W" or a preset (brain, lung, ...)
    slice_axis: int = 2  # volumes layout: voxel axis the 2D slices are taken along
    empty_slice_fraction: float = 1.0  # volumes layout: share of label-empty slices kept
    group_pattern: str | None = None  # regex, first group = patient id; None: auto; "none": off
    premade_split: str = "keep"  # leaked val/test images: keep | drop_leaked | regroup
    spacing: str | None = None  # pixel size in mm ("0.7" or "0.7x0.8") when files record none
    mask_mode: str = "auto"  # auto | binary | labels | palette | colors (medtl.data.masks)
    labels: str | None = None  # label values and names "1:lesion,2:halo" (None: found/labels.yaml)
    mask_colors: str | None = None  # colour masks "255,0,0:tumour;0,255,0:edema"


@dataclass
class ModelConfig:
    """Encoder, decoder, heads and how the pretrained encoder is transferred."""

    arch: str = "unet"
    encoder: str = "efficientnet-lite0"
    weights: str = "imagenet"
    strategy: str = "finetune"
    encoder_lr_mult: float = 0.1
    unfreeze_stages: int = 2
    warmup_epochs: int = 2
    in_channels: int = 3
    seg_weight: float = 1.0
    cls_weight: float = 1.0
    dropout: float = 0.2
    normalize: str = "auto"  # input normalisation: auto (the encoder's), imagenet, half, none
    unfreeze_lr_mult: float = 1.0  # two_stage: every group's lr x this when the encoder unfreezes
    decoder_channels: str | None = None  # light/unet widths "64,128,256,512,512"; None: default
    init: str | None = None  # warm start: an earlier run folder or its model.pt (whole network)


@dataclass
class TrainConfig:
    """Optimisation, schedule, loss and the engineering settings passed to Lightning."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4  # every optimiser, plain adam included (0 = torch's default)
    momentum: float = 0.9  # rmsprop and sgd (nesterov when > 0)
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    min_lr: float = 0.0  # cosine: the lr it anneals to; plateau: the lowest lr
    plateau_factor: float = 0.5  # plateau: lr x factor after plateau_patience epochs without
    plateau_patience: int = 3  # a lower val_loss
    loss: str = "dice_bce"
    cls_loss: str = "ce"
    class_weights: str = "none"
    label_smoothing: float = 0.0
    empty_mask: str = "one"
    label_weights: str | None = None  # several mask labels: "auto" (inverse pixel share) or "w0,w1,.."
    monitor: str = "auto"
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    seed: int = 0
    deterministic: bool = False
    resume: str | None = None
    precision: str = "32"
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    logger: str = "csv"
    max_steps_per_epoch: int = 0
    feature_cache: bool = True
    feature_cache_dtype: str = "float32"
    memory_format: str = "auto"
    cpu_allocator: str = "tuned"
    compile: str = "none"
    threads: int = 0


@dataclass
class OutputConfig:
    """Where run folders go."""

    dir: str = "runs"
    name: str | None = None


@dataclass
class Config:
    """The whole resolved configuration of one run (written to ``RUN/config.yaml``)."""

    task: str = "segmentation"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """The config as flat ``{"model.encoder": ..., "task": ...}`` pairs."""
        return _flatten(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (safe for YAML/JSON)."""
        return asdict(self)


# keys whose value must be one of a fixed set (checked in validate()).
CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS,
    "data.augment": AUGMENTS,
    "model.strategy": STRATEGIES,
    "train.optimizer": OPTIMIZERS,
    "train.scheduler": SCHEDULERS,
    "model.normalize": NORMALIZATIONS,
    "train.loss": SEG_LOSSES,
    "data.mask_mode": ("auto", "binary", "labels", "palette", "colors"),
    "train.cls_loss": CLS_LOSSES,
    "train.empty_mask": EMPTY_MASK_RULES,
    "train.logger": LOGGERS,
    "train.precision": ("32", "16-mixed", "bf16-mixed", "64"),
    "train.accelerator": ("auto", "cpu", "gpu", "cuda", "mps"),
    "train.memory_format": ("auto", "contiguous", "channels_last"),
    "train.cpu_allocator": ("tuned", "default"),
    "train.compile": ("none", "inductor", "aot_eager"),
    "train.feature_cache_dtype": ("float32", "bfloat16"),
    "data.cache": ("memory", "disk", "none"),
    "data.premade_split": ("keep", "drop_leaked", "regroup"),
}

# earlier spellings still read (old run folders' config.yaml hold data.cache: true)
_ON, _OFF = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
LEGACY_VALUES: dict[str, dict[str, str]] = {
    "data.cache": {**dict.fromkeys(_ON, "memory"), **dict.fromkeys(_OFF, "none")},
}


def all_keys(cfg: Any = None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (``data.root``, ``train.lr``, ...)."""
    cfg = Config() if cfg is None else cfg
    keys = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _suggest(key: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, list(options), n=3, cutoff=0.4)
    if not close and "." in key:  # match the leaf name against leaves
        leaf = key.rsplit(".", 1)[1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in options}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=1)]
    if not close:
        return ""

    def ratio(option: str) -> float:
        return difflib.SequenceMatcher(None, key, option).ratio()

    # near-ties are both offered: 'adamx' is one edit from 'adam' and from 'adamw'
    best = ratio(close[0])
    close = [c for c in close if ratio(c) >= best - 0.1][:2]
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def _field_type(owner: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _coerce(key: str, raw: Any, typ: Any) -> Any:
    """Convert ``raw`` (YAML value or override string) to the field type ``typ``."""
    args = typing.get_args(typ)
    optional = type(None) in args or typ is type(None)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        base = [a for a in args if a is not type(None)][0]
    else:
        base = typ
    if raw is None or (isinstance(raw, str) and raw.lower() in ("null", "none", "~") and optional):
        if optional:
            return None
        if base is str and raw is not None:
            return str(raw)
        raise ConfigError(f"config key '{key}' cannot be empty; give a {base.__name__}")
    if isinstance(raw, str):
        raw = raw.strip()
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            if isinstance(raw, str) and "e" in raw.lower():
                number = float(raw)  # 1e3 is an int; 1e-3 is not (int() would truncate it to 0)
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return int(raw)
        if base is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if base is str:
            if isinstance(raw, (list, dict)):
                raise ValueError
            return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key '{key}' expects {base.__name__}, got {raw!r}; e.g. {key}={_example(base)}"
        ) from None
    return raw


def _example(base: Any) -> str:
    return {bool: "true", int: "8", float: "0.001", str: "name"}.get(base, "value")


def set_key(cfg: Config, key: str, raw: Any) -> None:
    """Set dotted ``key`` on ``cfg`` from a raw value, checking the key and the type."""
    parts = key.split(".")
    owner: Any = cfg
    for part in parts[:-1]:
        if not hasattr(owner, part) or not dataclasses.is_dataclass(getattr(owner, part)):
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, all_keys())}")
        owner = getattr(owner, part)
    leaf = parts[-1]
    if not hasattr(owner, leaf) or dataclasses.is_dataclass(getattr(owner, leaf)):
        raise ConfigError(f"unknown config key '{key}'{_suggest(key, all_keys())}")
    value = _coerce(key, raw, _field_type(owner, leaf))
    setattr(owner, leaf, LEGACY_VALUES.get(key, {}).get(str(value).lower(), value))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out


def parse_override(text: str) -> tuple[str, str]:
    """Split ``key=value`` (Hydra syntax; a leading ``+`` is accepted and ignored)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not key=value; e.g. train.epochs=5")
    key, value = text.split("=", 1)
    return key.strip().lstrip("+"), value


def load_config(
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Build a validated :class:`Config` from defaults, an optional YAML file and overrides.

    Example::

        cfg = load_config("configs/busi_seg.yaml", ["train.epochs=5", "model.encoder=resnet18"])
    """
    cfg = Config()
    if base:
        for key, value in _flatten(base).items():
            set_key(cfg, key, value)
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; give an existing YAML file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise ConfigError(
                f"config file {path} is not valid YAML{where}; fix its syntax"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping of keys, e.g. 'task: segmentation'"
            )
        for key, value in _flatten(data).items():
            try:
                set_key(cfg, key, value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    for text in overrides or []:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    validate(cfg)
    return cfg


SECTIONS = ("data", "model", "train", "output")


def settings_overrides(**settings: Any) -> list[tuple[str, Any]]:
    """Python keyword settings as ``(dotted key, value)`` pairs, in the order given.

    The convention of :func:`medtl.api.train`: a section name takes a dict of that
    section's keys (``train={"epochs": 1}``); ``data`` may also be the data folder itself
    (``data="phantoms"`` = ``data.root``); ``task`` is ``task``; any other keyword is a
    key's last part when it names one key only (``epochs=1`` = ``train.epochs``,
    ``weights="none"`` = ``model.weights``). A last part that several sections share
    (``seed``, ``strategy``) must go in its section dict; the error names the choices.
    """
    keys = all_keys()
    by_leaf: dict[str, list[str]] = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    pairs: list[tuple[str, Any]] = []
    for name, value in settings.items():
        if name == "data" and not isinstance(value, dict):
            pairs.append(("data.root", None if value is None else str(value)))
        elif name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{name}= takes a dict of {name}.* keys, e.g. {name}={{...}}")
            pairs += [(f"{name}.{k}", v) for k, v in value.items()]
        elif name in keys:
            pairs.append((name, value))
        elif len(by_leaf.get(name, [])) == 1:
            pairs.append((by_leaf[name][0], value))
        elif name in by_leaf:
            options = " or ".join(f"{k.split('.')[0]}={{'{name}': ...}}" for k in by_leaf[name])
            raise ConfigError(f"'{name}' is a key of several sections; give {options}")
        else:
            raise ConfigError(f"unknown setting '{name}'{_suggest(name, list(by_leaf))}")
    return pairs


def config_from_settings(config: Config | str | Path | None = None, **settings: Any) -> Config:
    """A validated :class:`Config` from a Config (copied), a YAML file or the defaults, with
    ``settings`` applied as described in :func:`settings_overrides`. Example::

        cfg = config_from_settings(data="phantoms", image_size=64, epochs=1, weights="none")
    """
    if isinstance(config, Config):
        cfg = load_config(base=config.to_dict())
    else:
        cfg = load_config(config)
    for key, value in settings_overrides(**settings):
        set_key(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check choices and ranges; raise ConfigError naming the key and the allowed values."""
    flat = _flatten(cfg.to_dict())
    for key, allowed in CHOICES.items():
        value = str(flat[key])
        if value not in allowed:
            raise ConfigError(
                f"config key '{key}' is '{value}'; choose one of {', '.join(allowed)}"
                f"{_suggest(value, allowed)}"
            )
    checks = [
        (
            "data.image_size",
            cfg.data.image_size >= 16 and cfg.data.image_size % 16 == 0,
            "a multiple of 16, >= 16 (e.g. 128)",
        ),
        ("data.val_fraction", 0.0 <= cfg.data.val_fraction < 1.0, "in [0, 1)"),
        ("data.test_fraction", 0.0 <= cfg.data.test_fraction < 1.0, "in [0, 1)"),
        (
            "data.val_fraction",
            cfg.data.val_fraction + cfg.data.test_fraction < 1.0,
            "such that val_fraction + test_fraction < 1",
        ),
        ("train.epochs", cfg.train.epochs >= 1, ">= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, ">= 1"),
        ("train.lr", cfg.train.lr > 0, "> 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, ">= 0"),
        ("train.momentum", 0 <= cfg.train.momentum < 1, "in [0, 1)"),
        ("train.min_lr", 0 <= cfg.train.min_lr < cfg.train.lr, ">= 0 and < train.lr"),
        ("train.plateau_factor", 0 < cfg.train.plateau_factor < 1, "in (0, 1), e.g. 0.1"),
        ("train.plateau_patience", cfg.train.plateau_patience >= 0, ">= 0"),
        ("train.patience", cfg.train.patience >= 0, ">= 0 (0 = no early stopping)"),
        ("model.unfreeze_lr_mult", cfg.model.unfreeze_lr_mult > 0, "> 0, e.g. 0.1"),
        ("model.in_channels", cfg.model.in_channels in (1, 3), "1 or 3"),
        ("model.unfreeze_stages", cfg.model.unfreeze_stages >= 0, ">= 0"),
        ("data.workers", cfg.data.workers >= 0, ">= 0"),
        ("data.augment_copies", cfg.data.augment_copies >= 0, ">= 0 (K: 1 + K x the data)"),
        ("data.slice_axis", cfg.data.slice_axis in (0, 1, 2), "0, 1 or 2 (a voxel axis)"),
        (
            "data.empty_slice_fraction",
            0.0 <= cfg.data.empty_slice_fraction <= 1.0,
            "in [0, 1] (1 keeps every empty slice)",
        ),
        ("train.devices", cfg.train.devices >= 1, ">= 1"),
    ]
    for key, ok, rule in checks:
        if not ok:
            value = flat[key]
            raise ConfigError(f"config key '{key}' is {value!r}; it must be {rule}")
    parse_channels(cfg.model.decoder_channels)
    from medtl.data.dicom import parse_window  # imports only medtl.errors

    parse_window(cfg.data.window)  # ConfigError naming data.window and the presets


def parse_channels(text: str | None) -> tuple[int, ...] | None:
    """``model.decoder_channels`` ("64,128,256,512,512") as ints; None stays None."""
    if text is None:
        return None
    try:
        channels = tuple(int(c) for c in str(text).strip("[]() ").split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise ConfigError(
            f"config key 'model.decoder_channels' is {text!r}; give positive integers, "
            "e.g. model.decoder_channels=[64,128,256,512,512]"
        )
    return channels


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (re-loadable with ``load_config``)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's config.yaml)."""
    return load_config(base=d)
