"""Config schema: defaults, YAML + overrides precedence, coercion, typo suggestions."""

from __future__ import annotations

import pytest
import yaml

from medtl.configuration.loading import (
    Config,
    all_keys,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)
from medtl.utils.errors import ConfigError


def test_defaults_are_valid_and_documented_values():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.task == "segmentation"
    assert cfg.data.root is None
    assert cfg.data.image_size == 128
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.optimizer == "adamw"
    assert cfg.train.precision == "auto"  # bf16-mixed on a GPU that has it, else 32
    assert cfg.train.accelerator == "auto"  # CUDA, else MPS, else CPU
    assert cfg.train.max_time is None
    assert cfg.train.resume is None
    assert "train.lr" in all_keys() and "data.root" in all_keys() and "task" in all_keys()
    assert "train" not in all_keys()  # sections are not leaves


def test_yaml_then_overrides_take_precedence(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text(
        "task: classification\ntrain:\n  epochs: 7\n  lr: 0.01\nmodel:\n  encoder: resnet18\n",
        encoding="utf-8",
    )
    cfg = load_config(f, ["train.epochs=3", "+model.arch=fcn8"])
    assert cfg.task == "classification"  # from YAML
    assert cfg.train.epochs == 3  # override beats YAML
    assert cfg.train.lr == pytest.approx(0.01)  # YAML beats default
    assert cfg.model.encoder == "resnet18"
    assert cfg.model.arch == "fcn8"  # leading '+' accepted
    assert cfg.train.batch_size == 8  # untouched default


def test_base_dict_is_below_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 4\n", encoding="utf-8")
    cfg = load_config(
        f, ["train.batch_size=2"], base={"train": {"epochs": 9, "batch_size": 5, "lr": 0.5}}
    )
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (4, 2, 0.5)


@pytest.mark.parametrize(
    "override, attr, expected",
    [
        ("train.epochs=12", ("train", "epochs"), 12),
        ("train.epochs= 5 ", ("train", "epochs"), 5),
        ("train.epochs=1e2", ("train", "epochs"), 100),
        ("train.lr=1e-3", ("train", "lr"), 0.001),
        ("train.lr=0.25", ("train", "lr"), 0.25),
        ("train.weight_decay=0", ("train", "weight_decay"), 0.0),
        ("train.deterministic=true", ("train", "deterministic"), True),
        ("train.deterministic=Yes", ("train", "deterministic"), True),
        ("data.group_duplicates=false", ("data", "group_duplicates"), False),
        ("data.group_duplicates=0", ("data", "group_duplicates"), False),
        ("data.root=null", ("data", "root"), None),
        ("data.root=~", ("data", "root"), None),
        ("train.resume=None", ("train", "resume"), None),
        ("data.root=/data/my images", ("data", "root"), "/data/my images"),
        ("output.name=a=b", ("output", "name"), "a=b"),  # only the first '=' splits
        ("train.scheduler=none", ("train", "scheduler"), "none"),  # a str, not None
    ],
)
def test_override_coercion(override, attr, expected):
    cfg = load_config(overrides=[override])
    value = getattr(getattr(cfg, attr[0]), attr[1])
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "override, bad, suggestion",
    [
        ("train.lrr=0.1", "train.lrr", "train.lr"),
        ("trian.lr=0.1", "trian.lr", "train.lr"),
        ("model.encodr=x", "model.encodr", "model.encoder"),
        ("tsk=classification", "tsk", "task"),
        ("data.imagesize=64", "data.imagesize", "data.image_size"),
    ],
)
def test_mistyped_key_names_it_and_suggests(override, bad, suggestion):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    msg = str(err.value)
    assert f"'{bad}'" in msg
    assert f"did you mean '{suggestion}'" in msg
    assert "\n" not in msg


def test_section_itself_is_not_a_settable_key():
    with pytest.raises(ConfigError, match="unknown config key 'train'"):
        load_config(overrides=["train=5"])


@pytest.mark.parametrize(
    "override, key, typ",
    [
        ("train.epochs=abc", "train.epochs", "int"),
        ("train.epochs=2.5", "train.epochs", "int"),
        ("train.patience=1e-3", "train.patience", "int"),  # must not truncate to 0
        ("train.epochs=true", "train.epochs", "int"),
        ("train.lr=fast", "train.lr", "float"),
        ("data.group_duplicates=maybe", "data.group_duplicates", "bool"),
        ("train.epochs=null", "train.epochs", "int"),  # not optional
    ],
)
def test_wrong_type_names_key_and_type(override, key, typ):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    msg = str(err.value)
    assert f"'{key}'" in msg
    assert f"expects {typ}" in msg


def test_override_without_equals():
    with pytest.raises(ConfigError, match="'train.epochs' is not key=value"):
        load_config(overrides=["train.epochs"])
    assert parse_override("+a.b= c") == ("a.b", " c")


def test_choice_typo_suggests_closest():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.optimizer=adamx"])
    msg = str(err.value)
    assert "'train.optimizer'" in msg and "'adamx'" in msg
    assert "did you mean" in msg and "'adamw'" in msg.split("did you mean")[1]
    with pytest.raises(ConfigError, match="did you mean 'classification'"):
        load_config(overrides=["task=clasification"])
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        load_config(overrides=["train.scheduler=cosin"])


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["data.image_size=100"], "data.image_size"),
        (["data.val_fraction=1.0"], "data.val_fraction"),
        (["data.val_fraction=0.6", "data.test_fraction=0.4"], "data.val_fraction"),
        (["train.epochs=0"], "train.epochs"),
        (["train.lr=0"], "train.lr"),
        (["model.in_channels=2"], "model.in_channels"),
        (["train.devices=0"], "train.devices"),
    ],
)
def test_range_checks_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(overrides=overrides)


def test_fractions_summing_below_one_are_fine():
    cfg = load_config(overrides=["data.val_fraction=0.5", "data.test_fraction=0.49"])
    assert cfg.data.val_fraction + cfg.data.test_fraction == pytest.approx(0.99)


def test_yaml_with_wrong_type_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epochs: many\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert str(f) in msg and "'train.epochs'" in msg and "expects int" in msg


def test_yaml_with_unknown_key_names_file_and_suggests(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("train:\n  ephocs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(f) in str(err.value) and "did you mean 'train.epochs'" in str(err.value)


def test_yaml_native_types_and_null(tmp_path):
    f = tmp_path / "t.yaml"
    # PyYAML reads 1e-3 (no dot) as a string: it must still become a float
    f.write_text(
        "data:\n  root: null\n  group_duplicates: no\ntrain:\n  lr: 1e-3\n  epochs: 5.0\n  precision: 16-mixed\n",
        encoding="utf-8",
    )
    cfg = load_config(f)
    assert cfg.data.root is None and cfg.data.group_duplicates is False
    assert cfg.train.lr == pytest.approx(0.001) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 5 and isinstance(cfg.train.epochs, int)
    assert cfg.train.precision == "16-mixed"


def test_yaml_null_for_required_value_is_an_error(tmp_path):
    f = tmp_path / "n.yaml"
    f.write_text("train:\n  epochs:\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'train.epochs' cannot be empty"):
        load_config(f)


def test_bad_yaml_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml not found"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  epochs: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML \(line"):
        load_config(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_config(empty) == Config()


def test_dump_then_load_round_trip(tmp_path):
    cfg = load_config(
        overrides=[
            "task=multitask",
            "data.root=/d/busi (copy)",
            "train.lr=3e-4",
            "train.precision=bf16-mixed",
            "train.deterministic=true",
            "output.name=run 1",
            "model.seg_weight=0.9",
        ]
    )
    text = dump_config(cfg)
    f = tmp_path / "config.yaml"
    f.write_text(text, encoding="utf-8")
    again = load_config(f)
    assert again == cfg
    assert config_from_dict(yaml.safe_load(text)) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    # precision stays a string through YAML (32 would otherwise come back as int)
    assert load_config(overrides=["train.precision=32"]).train.precision == "32"
    assert "precision: '32'" in dump_config(load_config(overrides=["train.precision=32"]))


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("data.classes=[benign,malignant]", "classes", "benign,malignant"),
        ('model.decoder_channels="32,64,128,256,256"', "decoder_channels", "32,64,128,256,256"),
        ("data.lesion_labels='1,2'", "lesion_labels", "1,2"),
        ("data.lesion_labels=1,2", "lesion_labels", "1,2"),
        ("output.name=run[1]", "name", "run[1]"),  # brackets inside a value stay
    ],
)
def test_a_comparison_s_one_value_forms_reach_the_key_as_its_list(override, key, value):
    """``[a,b]`` and ``"a,b"`` keep a list one value in a comparison's grid; every key then
    reads the list itself (the decoder widths were refused in the quoted form)."""
    cfg = load_config(None, [override])
    section = getattr(cfg, override.split(".")[0])
    assert getattr(section, key) == value
