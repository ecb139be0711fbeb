"""Every recipe in configs/ loads as written; recipe-only options behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.configuration.loading import load_config
from medtl.data.pipeline import load_samples, make_loader, prepare
from medtl.utils.errors import DataError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


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


def _recipe(name: str):
    path = next(p for p in CONFIGS if p.stem == name)
    return load_config(path), path.read_text()


def test_resnet18_unet_recipe_is_the_studys_setup():
    cfg, text = _recipe("resnet18_unet_rmsprop")
    assert (cfg.model.encoder, cfg.model.arch, cfg.model.in_channels) == ("resnet18", "unet", 1)
    assert cfg.model.normalize == "half" and cfg.data.image_size == 256
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.2, 0.0)  # 80/20
    assert 1 + cfg.data.augment_copies == 7  # "7x offline augmentation" = 7x the data
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.lr) == ("bce", "rmsprop", 1e-3)
    assert (cfg.train.momentum, cfg.train.weight_decay) == (0.0, 0.0)
    assert cfg.train.scheduler == "plateau"
    assert (cfg.train.plateau_factor, cfg.train.plateau_patience) == (0.1, 5)
    assert cfg.train.epochs == 200 and cfg.train.patience == 0
    assert "model.encoder=none" in text  # the no-pretrain U-Net row


def test_densenet121_classifier_recipe_is_the_studys_two_stages():
    cfg, _ = _recipe("densenet121_two_stage_classification")
    assert cfg.task == "classification" and cfg.model.encoder == "densenet121"
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.2, 0.0)
    m = cfg.model
    assert (m.strategy, m.warmup_epochs, m.unfreeze_stages) == ("two_stage", 10, 1)
    assert cfg.train.epochs - m.warmup_epochs == 5  # last dense block + head for 5 epochs
    assert m.unfreeze_lr_mult < 1.0 and m.encoder_lr_mult == 1.0  # smaller lr for both
    assert (cfg.train.cls_loss, cfg.train.class_weights, cfg.train.optimizer) == (
        "ce",
        "none",
        "adam",
    )
    assert cfg.train.weight_decay == 0.0 and cfg.train.patience == 0


def test_mobilenetv2_light_recipe_is_the_studys_setup():
    cfg, text = _recipe("mobilenetv2_light_frozen_vs_finetune")
    assert (cfg.model.arch, cfg.model.encoder, cfg.data.image_size) == (
        "light",
        "mobilenet_v2",
        128,
    )
    assert cfg.data.augment == "none" and cfg.data.layout == "siblings"
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.epochs) == ("bce", "adam", 30)
    assert cfg.train.patience == 0
    # each approach its own lr: two explicit cells
    assert "--cell 'model.strategy=frozen train.lr=" in text
    assert "--cell 'model.strategy=finetune train.lr=" in text


def test_densenet_vs_mobilenet_unet_recipe():
    cfg, _ = _recipe("densenet121_vs_mobilenetv2_unet")
    assert cfg.data.layout == "paired" and cfg.model.arch == "unet"
    assert cfg.train.monitor == "val_dice" and cfg.train.patience == 0  # best val Dice kept


def test_vgg_fcn_multitask_recipe():
    cfg, _ = _recipe("vgg16bn_fcn8_multitask")
    assert (cfg.task, cfg.model.arch, cfg.model.encoder) == ("multitask", "fcn8", "vgg16_bn")
    assert (cfg.model.seg_weight, cfg.model.cls_weight, cfg.train.loss) == (0.9, 0.1, "dice")
    assert cfg.train.scheduler == "cosine" and cfg.train.patience == 0


def test_early_stopping_is_off_unless_asked():
    assert load_config().train.patience == 0
    for path in CONFIGS:
        assert load_config(path).train.patience == 0, path.name
