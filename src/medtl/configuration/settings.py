"""Python keyword settings -> a validated :class:`~medtl.configuration.loading.Config` (the API's way to
configure a run without ``key=value`` override strings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtl.configuration.loading import Config, _suggest, all_keys, load_config, set_key, validate
from medtl.utils.errors import ConfigError

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
