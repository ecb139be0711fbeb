"""Typed configuration: dataclass schema, YAML loading, Hydra-style ``key=value`` overrides.

Every value is checked against its field's type and, for names, against the registry of
allowed choices; a mistyped key or value raises :class:`~medtl.utils.errors.ConfigError` naming
the key and suggesting the closest valid one.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from medtl.configuration.schema import (  # noqa: F401  (re-exported: medtl.configuration.loading is the public face)
    AUGMENTS,
    CHOICES,
    CLS_LOSSES,
    EMPTY_MASK_RULES,
    LEGACY_VALUES,
    LOGGERS,
    NONE_IS_A_VALUE,
    NORMALIZATIONS,
    OPTIMIZERS,
    SCHEDULERS,
    SEG_LOSSES,
    STRATEGIES,
    TASKS,
    Config,
    DataConfig,
    ModelConfig,
    OutputConfig,
    TrainConfig,
    flatten,
)
from medtl.utils.errors import ConfigError
from medtl.utils.formatting import suggest as _suggest


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


def _field_type(owner: Any, name: str) -> Any:
    return _type_hints(type(owner))[name]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a config section, cached: ``get_type_hints`` is slow and
    every key set or read back asks (a comparison sets over a thousand keys)."""
    return typing.get_type_hints(cls)


def _coerce(key: str, raw: Any, typ: Any) -> Any:
    """Convert ``raw`` (YAML value or override string) to the field type ``typ``."""
    args = typing.get_args(typ)
    optional = type(None) in args or typ is type(None)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        base = [a for a in args if a is not type(None)][0]
    else:
        base = typ
    if isinstance(raw, str) and key in NONE_IS_A_VALUE and raw.strip().lower() == "none":
        return "none"  # a documented value of this key, not "unset"
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
            return unwrapped(str(raw))
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key '{key}' expects {base.__name__}, got {raw!r}; e.g. {key}={_example(base)}"
        ) from None
    return raw


def unwrapped(text: str) -> str:
    """``text`` without one outer pair of brackets or quotes: the forms ``[a,b]`` and
    ``"a,b"`` that keep a comma list one value in a comparison's grid
    (:mod:`medtl.comparison.grid`) reach every key as the list ``a,b`` it reads.

    >>> unwrapped("[benign,malignant]"), unwrapped('"64,128"'), unwrapped("a[1]")
    ('benign,malignant', '64,128', 'a[1]')
    """
    if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ('"', '"'), ("'", "'")):
        return text[1:-1].strip()
    return text


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
        for key, value in flatten(base).items():
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
        for key, value in flatten(data).items():
            try:
                set_key(cfg, key, value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    for text in overrides or []:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check choices and ranges; raise ConfigError naming the key and the allowed values."""
    flat = flatten(cfg.to_dict())
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
            cfg.data.image_size % 16 == 0 < cfg.data.image_size,
            "a multiple of 16, >= 16 (e.g. 128)",
        ),  # fmt: skip
        ("data.val_fraction", 0.0 <= cfg.data.val_fraction < 1.0, "in [0, 1)"),
        ("data.test_fraction", 0.0 <= cfg.data.test_fraction < 1.0, "in [0, 1)"),
        (
            "data.val_fraction",
            cfg.data.val_fraction + cfg.data.test_fraction < 1.0,
            "such that val_fraction + test_fraction < 1",
        ),  # fmt: skip
        ("train.epochs", cfg.train.epochs >= 1, ">= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, ">= 1"),
        ("train.lr", cfg.train.lr > 0, "> 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, ">= 0"),
        ("train.momentum", 0 <= cfg.train.momentum < 1, "in [0, 1)"),
        ("train.min_lr", 0 <= cfg.train.min_lr < cfg.train.lr, ">= 0 and < train.lr"),
        ("train.plateau_factor", 0 < cfg.train.plateau_factor < 1, "in (0, 1), e.g. 0.1"),
        ("train.plateau_patience", cfg.train.plateau_patience >= 0, ">= 0"),
        ("train.patience", cfg.train.patience >= 0, ">= 0 (0 = no early stopping)"),
        ("train.ema_epochs", cfg.train.ema_epochs >= 0, ">= 0 (0 = no weight averaging)"),
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
        ),  # fmt: skip
        ("train.devices", cfg.train.devices >= 1, ">= 1"),
    ]
    for key, ok, rule in checks:
        if not ok:
            value = flat[key]
            raise ConfigError(f"config key '{key}' is {value!r}; it must be {rule}")
    parse_channels(cfg.model.decoder_channels)
    from medtl.configuration.limits import check_pixel_cap
    from medtl.configuration.windows import parse_window

    check_pixel_cap(cfg.data.image_size, cfg.data.max_pixels)

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
