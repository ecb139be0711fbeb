"""Shared fixtures: tiny phantom data sets and trained runs, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

BUSI = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "busi" / "Dataset_BUSI_with_GT"
)

TINY = [
    "data.image_size=32",
    "train.epochs=1",
    "train.batch_size=4",
    "model.weights=none",
    "model.encoder=resnet18",
    "data.augment=none",
    "train.patience=0",
    "train.threads=1",
    "train.memory_format=contiguous",  # runs compared for equality must not differ in layout
]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"BUSI data set not found at {BUSI}")
    for item in items:
        if "busi" in item.keywords and not BUSI.is_dir():
            item.add_marker(skip)


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> Path:
    """16 phantom images (benign/malignant/normal with masks), 32 px."""
    from medtl.data.synthetic import make_phantoms

    return make_phantoms(tmp_path_factory.mktemp("data") / "phantoms", n=16, size=32, seed=0)


def train_tiny(data: Path, out: Path, *extra: str) -> Path:
    from medtl.config import load_config
    from medtl.training import train

    cfg = load_config(overrides=[f"data.root={data}", f"output.dir={out}", *TINY, *extra])
    return train(cfg, progress=False)


@pytest.fixture(scope="session")
def seg_run(phantoms, tmp_path_factory) -> Path:
    return train_tiny(phantoms, tmp_path_factory.mktemp("runs"), "output.name=seg")


@pytest.fixture(scope="session")
def mt_run(phantoms, tmp_path_factory) -> Path:
    return train_tiny(phantoms, tmp_path_factory.mktemp("runs"), "task=multitask", "output.name=mt")
