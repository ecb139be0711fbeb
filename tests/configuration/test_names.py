"""Each list of choices exists once: validation, the registries and the README agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medtl.configuration import names
from medtl.configuration.loading import CHOICES, load_config
from medtl.data.cache.modes import CACHE_MODES
from medtl.data.layouts import LAYOUTS
from medtl.models.build import ARCHS
from medtl.models.strategy import STRATEGIES
from medtl.training.losses import BINARY_ALIASES, CLS_LOSSES, LABEL_LOSSES, SEG_LOSSES
from medtl.training.task import OPTIMIZERS, SCHEDULERS
from medtl.utils.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"

#: config key -> the names its registry holds
REGISTRIES = {
    "train.loss": set(LABEL_LOSSES),
    "train.cls_loss": set(CLS_LOSSES),
    "train.optimizer": set(OPTIMIZERS),
    "train.scheduler": set(SCHEDULERS),
    "data.cache": set(CACHE_MODES),
    "model.strategy": set(STRATEGIES),
}


def readme_choices() -> dict[str, set[str]]:
    """The README configuration table: each row's first key -> the plain `names` of its
    meaning column (dotted keys, paths and ``key=value`` examples are left out)."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        match = re.match(r"`([a-z_.]+)`", cells[0]) if len(cells) == 3 else None
        if match:
            rows[match.group(1)] = set(re.findall(r"`([a-z0-9_]+)`", cells[2]))
    return rows


def test_validation_accepts_exactly_the_registries_names():
    for key, registry in REGISTRIES.items():
        assert set(CHOICES[key]) == registry, key
    assert set(SEG_LOSSES) | set(BINARY_ALIASES) == set(LABEL_LOSSES)
    for key, registry in REGISTRIES.items():
        for name in registry:
            load_config(overrides=[f"{key}={name}"])


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("train.loss=dice_ec", "dice_ce"),
        ("train.optimizer=adamm", "adam"),
        ("train.scheduler=cosin", "cosine"),
        ("data.cache=disc", "disk"),
        ("model.strategy=two-stage", "two_stage"),
    ],
)
def test_a_misspelt_name_is_refused_with_a_suggestion(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        load_config(overrides=[override])


def test_readme_table_lists_the_registries():
    rows = readme_choices()
    documented = {
        **{k: v for k, v in REGISTRIES.items() if k != "train.cls_loss"},  # its row is shared
        "data.layout": {"auto", *LAYOUTS},
        "model.arch": set(ARCHS),
    }
    for key, registry in documented.items():
        assert rows[key] == registry, f"README's {key} row lists {sorted(rows[key])}"


def test_a_registry_that_drifts_fails_on_import():
    names.check_registry("train.optimizer", ("adam", "sgd"), {"adam": 1, "sgd": 2})
    with pytest.raises(RuntimeError, match=r"only in the registry \['lion'\]"):
        names.check_registry("train.optimizer", ("adam",), ("adam", "lion"))
