"""Every recipe in configs/ loads as written; recipe-only options behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.config import load_config
from medtl.data.pipeline import load_samples, make_loader, prepare
from medtl.errors import DataError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_is_a_recipe_per_replaced_system():
    assert len(CONFIGS) >= 7


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_loads(path):
    cfg = load_config(path)
    assert cfg.task in ("segmentation", "classification", "multitask")
    assert "medtl " in path.read_text()  # each recipe says how to run it


def test_data_classes_keeps_only_the_named_classes(phantoms):
    ds = load_samples(
        load_config(overrides=[f"data.root={phantoms}", "data.classes=benign,malignant"])
    )
    assert ds.classes == ["benign", "malignant"]
    assert {s.label for s in ds.samples} == {"benign", "malignant"}
    with pytest.raises(DataError, match="benign,maligant|maligant"):
        load_samples(
            load_config(overrides=[f"data.root={phantoms}", "data.classes=benign,maligant"])
        )


def test_augment_copies_repeat_each_training_image(phantoms):
    cfg = load_config(
        overrides=[
            f"data.root={phantoms}",
            "data.image_size=32",
            "data.augment_copies=2",
            "train.batch_size=1",
        ]
    )
    data = prepare(cfg)
    loader = make_loader(data, [0, 1, 2], cfg, train=True)
    rows = sorted(int(r) for _, _, _, r in loader)
    assert rows == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(make_loader(data, [0, 1, 2], cfg, train=False).dataset) == 3
