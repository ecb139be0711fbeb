"""medtl plan: the fingerprint, the rules, the budget arithmetic, bad input, and the
predicted fit time against a measured one (phantoms, one thread)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medtl.planning import choices as rules
from medtl.planning.fingerprint import Fingerprint, fingerprint
from medtl.planning.planner import _decide, _split_sizes
from medtl.planning.probe import Measure
from medtl.utils.errors import ConfigError
from tests.conftest import run_cli


def _fp(**changes) -> Fingerprint:
    base = dict(
        root="/data",
        layout="class_masks",
        n_images=100,
        native_size=(512, 512),
        min_side=512,
        channels={"1": 100},
        bit_depths={"8": 100},
        has_masks=True,
        foreground_share=0.05,
        objects={"foreground": {"n_objects": 90, "n_images": 80, "min_share": 0.001,
                                "p10_share": 0.004, "median_share": 0.03}},
        classes={"benign": 50, "malignant": 30, "normal": 20},
        imbalance=2.5,
        groups=100,
        exact_duplicates=0,
        near_duplicates=0,
    )  # fmt: skip
    return Fingerprint(**{**base, **changes})


def _measure(step: float = 0.5, encoder: str = "resnet18", batch: int = 8) -> Measure:
    return Measure(encoder, 128, batch, "cpu", "32", step, step / 3, 0.2, 900.0, 180.0)


def test_fingerprint_counts_the_objects_of_the_single_decode(phantoms):
    fp = fingerprint(phantoms)
    assert (fp.n_images, fp.native_size, fp.min_side) == (16, (32, 32), 32)
    assert fp.channels == {"1": 16} and fp.bit_depths == {"8": 16} and fp.has_masks
    shares = []
    for mask in sorted(phantoms.rglob("*_mask.png")):
        arr = np.asarray(Image.open(mask)) > 127
        labels, n = ndimage.label(arr, structure=np.ones((3, 3), bool))
        shares += (np.bincount(labels.ravel())[1:] / arr.size).tolist()
    o = fp.objects["foreground"]
    assert o["n_objects"] == len(shares)
    assert o["median_share"] == pytest.approx(float(np.median(shares)))
    assert o["p10_share"] == pytest.approx(float(np.percentile(shares, 10)))
    assert fp.groups == 16 and fp.imbalance == pytest.approx(max(fp.classes.values()) / 3)
    empty = {}  # classes whose every mask file is all zero, read here from the files
    for cls in fp.classes:
        masks = [np.asarray(Image.open(m)) for m in sorted((phantoms / cls).glob("*_mask.png"))]
        if masks and not any(m.any() for m in masks):
            empty[cls] = len(masks)
    assert fp.empty_classes == empty and empty  # the phantoms' normals


@pytest.mark.parametrize(
    ("share", "min_side", "size"),
    [(0.004, 512, 128), (0.0005, 512, 384), (0.0005, 200, 192), (0.2, 512, 32)],
)
def test_image_size_keeps_the_small_objects_visible(share, min_side, size):
    fp = _fp(min_side=min_side)
    fp.objects["foreground"]["p10_share"] = share
    choice = rules.image_size(fp, "segmentation")
    assert choice.value == size
    assert f"{share:.2g} of the image" in choice.reason
    if min_side >= 384:  # not capped: the object keeps >= 64 px, one size smaller would not
        assert share * size**2 >= rules.MIN_OBJECT_PIXELS
        smaller = rules.SIZES[rules.SIZES.index(size) - 1] if size > 32 else 0
        assert share * smaller**2 < rules.MIN_OBJECT_PIXELS


def test_epochs_fill_the_budget():
    fp, m = _fp(groups=4), _measure(0.5)
    plan = _decide(fp, "segmentation", 200, "cpu", rules.Choice(128, "x"), [m], None, True)
    n_train, n_val = _split_sizes(100, 0)
    assert (n_train, n_val) == (60, 20)
    epoch = 7 * 0.5 + 3 * (0.5 / 3) + 1.5 * 0.2  # 60 // 8 steps, ceil(20/8) forwards, 1.5 ckpts
    fit = (200 * (1 - rules.RESERVE) - 100 * 0.005) - (1 + 4 * 0.5)
    assert plan.value("train.epochs") == int(fit // epoch) == 38  # under MAX_EPOCHS
    assert plan.run_fit_s == pytest.approx(1 + 4 * 0.5 + plan.value("train.epochs") * epoch)
    assert plan.folds == 0 and plan.folds_reason.startswith("only 4 independent groups")
    assert plan.value("train.max_time") == "3m20s" and plan.value("model.weights") == "imagenet"


def test_the_preferred_encoder_wins_when_it_fits_else_the_fastest():
    fp = _fp(groups=4)
    slow, fast = _measure(2.0, "resnet34"), _measure(0.2, "resnet18")
    roomy = _decide(fp, "segmentation", 3600, "cpu", rules.Choice(128, "x"), [slow, fast], 0, True)
    assert roomy.value("model.encoder") == "resnet34"
    tight = _decide(fp, "segmentation", 200, "cpu", rules.Choice(128, "x"), [slow, fast], 0, True)
    assert tight.value("model.encoder") == "resnet18"


def test_five_folds_when_groups_and_budget_allow():
    args = ("segmentation", 7200, "cpu", rules.Choice(128, "x"), [_measure(0.3)])
    plan = _decide(_fp(groups=40), *args, None, True)
    assert plan.folds == 5 and "5-fold CV and the fold ensemble" in plan.folds_reason
    assert plan.total_s == pytest.approx(5 * plan.run_fit_s + 100 * 0.005)
    assert _decide(_fp(groups=6), *args, None, True).folds == 0
    assert _decide(_fp(groups=40), *args, 3, True).folds == 3


def _timed_by_pixels(calls: list[int], step_at_128: float = 0.1):
    def timed(size: int) -> Measure:
        calls.append(size)
        m = _measure(step_at_128 * (size / 128) ** 2)
        m.size = size
        return m

    return timed


@pytest.mark.parametrize("budget", [1200, 3600, 7200])
def test_images_grow_while_the_budget_trains_enough_epochs(budget):
    """From the small objects' size, the plan grows to the largest size (timed there) whose
    runs still train GOOD_EPOCHS epochs, and never beyond the typical image's side."""
    from medtl.planning.planner import _grow

    fp = _fp(groups=40, n_images=1000, native_size=(320, 300))
    base = _decide(fp, "segmentation", budget, "cpu", rules.Choice(128, "objects"),
                   [_measure(0.1)], None, True)  # fmt: skip
    calls: list[int] = []
    plan = _grow(base, fp, _timed_by_pixels(calls), True)
    size = int(plan.value("data.image_size"))
    epochs_at = {s: _decide(fp, "segmentation", budget, "cpu", rules.Choice(s, ""),
                            [_timed_by_pixels([])(s)], base.folds, True).value("train.epochs")
                 for s in (128, 160, 192, 224, 256)}  # fmt: skip
    grown = 128  # the sizes up to the first that trains too few epochs
    for s in (160, 192, 224, 256):
        if epochs_at[s] < rules.GOOD_EPOCHS:
            break
        grown = s
    assert size == grown
    assert size <= 300 and 320 not in calls  # the typical image's shorter side caps it
    if size > 128:
        assert calls[-1] > size or calls[-1] == size == 256  # timed, and one more size tried
        assert plan.value("train.epochs") == epochs_at[size]
        assert "larger images keep more of every boundary" in plan.keys["data.image_size"].reason
        assert plan.probes[-1].size in calls and plan.value("model.encoder") == "resnet18"
        assert (plan.folds, plan.folds_reason) == (base.folds, base.folds_reason)
    else:
        assert plan is base


def test_images_do_not_grow_when_the_budget_is_tight():
    from medtl.planning.planner import _grow

    fp = _fp(groups=4)
    base = _decide(fp, "segmentation", 80, "cpu", rules.Choice(128, "objects"),
                   [_measure(0.5)], None, True)  # fmt: skip
    assert base.value("train.epochs") < rules.GOOD_EPOCHS
    calls: list[int] = []
    assert _grow(base, fp, _timed_by_pixels(calls), True) is base and calls == []


def test_loading_the_batches_counts_in_the_epoch():
    """On the CPU the batches load between the steps (no DataLoader workers): the probe's
    loading time is part of every step, so it buys fewer epochs."""
    from medtl.planning.probe import load_seconds

    fp = _fp(groups=4)
    bare, loaded = _measure(0.5), _measure(0.5)
    loaded.load_s = 0.25
    args = ("segmentation", 200, "cpu", rules.Choice(128, "x"))  # under MAX_EPOCHS
    n_train, n_val = _split_sizes(100, 0)
    assert rules.epoch_seconds(loaded, n_train, n_val, 8) - rules.epoch_seconds(
        bare, n_train, n_val, 8
    ) == pytest.approx((n_train // 8) * 0.25)
    assert (_decide(fp, *args, [loaded], None, True).value("train.epochs")
            < _decide(fp, *args, [bare], None, True).value("train.epochs"))  # fmt: skip
    # the real loader path: augmenting costs more than converting alone
    assert load_seconds("standard", 64, 4) > 2 * load_seconds("none", 64, 4) > 0


def test_epochs_stop_at_the_maximum():
    plan = _decide(_fp(groups=4), "segmentation", 6000, "cpu", rules.Choice(128, "x"),
                   [_measure(0.5)], None, True)  # fmt: skip
    assert plan.value("train.epochs") == rules.MAX_EPOCHS


def test_a_budget_too_small_names_the_smallest_that_fits():
    fp, m = _fp(groups=4), _measure(1.0)
    with pytest.raises(ConfigError, match="too small for one epoch") as e:
        _decide(fp, "segmentation", 5, "cpu", rules.Choice(128, "x"), [m], None, True)
    assert "\n" not in str(e.value)
    smallest = str(e.value).rsplit("fits: ", 1)[1]
    from medtl.runtime.device import parse_duration

    seconds = parse_duration(smallest).total_seconds()
    plan = _decide(fp, "segmentation", seconds, "cpu", rules.Choice(128, "x"), [m], None, True)
    assert plan.value("train.epochs") == 1


def test_no_weights_on_disk_plans_with_random_init_and_names_the_file():
    plan = _decide(
        _fp(), "segmentation", 600, "cpu", rules.Choice(128, "x"), [_measure()], 0, False
    )
    assert plan.value("model.weights") == "none" and plan.value("model.strategy") == "finetune"
    assert "resnet18-f37072fd.pth" in plan.notes[0] and "resnet18-f37072fd.pth" in (
        plan.keys["model.weights"].reason
    )


def test_a_class_with_only_empty_masks_is_named_with_the_override_that_leaves_it_out():
    fp = _fp(empty_classes={"normal": 20})
    seg = _decide(fp, "segmentation", 600, "cpu", rules.Choice(128, "x"), [_measure()], 0, True)
    (note,) = seg.notes
    assert "normal (20 images)" in note and "'data.classes=[benign,malignant]'" in note
    both = _decide(fp, "multitask", 600, "cpu", rules.Choice(128, "x"), [_measure()], 0, True)
    assert both.notes == []  # the classifier needs the normals
    plain = _decide(
        _fp(), "segmentation", 600, "cpu", rules.Choice(128, "x"), [_measure()], 0, True
    )
    assert plain.notes == []


def test_tiny_objects_get_dice_focal_and_label_maps_dice_ce():
    fp = _fp()
    fp.objects["foreground"]["p10_share"] = 0.002
    choice = rules.loss(fp, "segmentation")
    assert choice.value == "dice_focal" and "0.002 of the image < 0.01" in choice.reason
    fp.objects["foreground"]["p10_share"] = rules.TINY_OBJECT_SHARE  # the rule is "<"
    assert rules.loss(fp, "segmentation").value == "dice_bce"
    assert rules.loss(_fp(objects={"1": {"p10_share": 0.05}, "2": {"p10_share": 0.1}}),
                      "segmentation").value == "dice_ce"  # fmt: skip
    assert rules.loss(_fp(objects={"1": {"p10_share": 0.05}, "2": {"p10_share": 0.004}}),
                      "segmentation").value == "dice_focal"  # fmt: skip


@pytest.mark.parametrize(("side", "loss"), [(3, "dice_focal"), (24, "dice_bce")])
def test_the_loss_follows_the_object_sizes_of_phantoms(tmp_path, side, loss):
    """Phantoms whose lesions are 3x3 (0.2% of a 64 px image) get Dice+focal, 24x24 (14%)
    Dice+BCE, from the fingerprint of their masks."""
    from tests.data.conftest import save, smooth_image

    for i in range(6):
        cls = ("benign", "malignant")[i % 2]
        mask = np.zeros((64, 64), np.uint8)
        at = 5 + 4 * i
        mask[at : at + side, at : at + side] = 255
        save(tmp_path / cls / f"{cls}_{i}.png", smooth_image(i, 64))
        save(tmp_path / cls / f"{cls}_{i}_mask.png", mask)
    fp = fingerprint(tmp_path)
    assert fp.smallest_object_share == pytest.approx(side * side / 64**2)
    assert rules.loss(fp, "segmentation").value == loss


def test_no_masks_for_a_segmentation_plan_is_one_line(tmp_path, capsys):
    from medtl.api import synth

    data = synth(tmp_path / "folders", n=6, size=32, layout="imagefolder")
    code, out, err = run_cli(capsys, "plan", str(data), "--out", str(tmp_path / "p.yaml"))
    assert code == 2 and "no masks found, so no segmentation plan" in err
    errors = [line for line in err.splitlines() if line.startswith("medtl: error")]
    assert len(errors) == 1 and "Traceback" not in err and not (tmp_path / "p.yaml").exists()


@pytest.mark.slow
def test_predicted_fit_time_against_the_measured_one(tmp_path, monkeypatch, capsys):
    """Budget honesty on phantoms: the plan's predicted fit time and a real fit agree within
    a factor of 3 (a loaded test machine; the +-25% table needs a quiet one)."""
    from medtl.configuration.loading import load_config
    from medtl.data.phantoms import make_phantoms
    from medtl.training.fit import train

    monkeypatch.setattr(rules, "encoders_on_disk", lambda: ["efficientnet-lite0"])
    data = make_phantoms(tmp_path / "ph", n=24, size=32, seed=0)
    out = tmp_path / "plan.yaml"
    code, printed, err = run_cli(capsys, "plan", str(data), "--budget", "25s", "--out", str(out))
    assert code == 0, err
    assert printed.strip().endswith(str(out))
    text = out.read_text()
    assert "# predicted:" in text and "data.image_size" not in text  # nested YAML keys
    cfg = load_config(out, overrides=["train.threads=1", f"output.dir={tmp_path / 'runs'}"])
    assert cfg.data.image_size == 32 and cfg.train.planned_seconds > 0
    run = train(cfg, progress=False)
    check = json.loads((run / "run.json").read_text())["plan_check"]
    assert check["predicted_s"] == cfg.train.planned_seconds
    assert 1 / 3 <= check["ratio"] <= 3, check
    assert math.isclose(check["ratio"], check["measured_s"] / check["predicted_s"], rel_tol=1e-2)


def test_duplicates_count_as_one_independent_unit(tmp_path):
    from tests.data.conftest import near_copy, save, smooth_image

    for i in range(4):
        save(tmp_path / "d" / ("a" if i % 2 else "b") / f"img{i}.png", smooth_image(i))
    save(tmp_path / "d" / "a" / "copy.png", smooth_image(1))  # exact copy of img1
    save(tmp_path / "d" / "b" / "near.png", near_copy(smooth_image(2)))  # near copy of img2
    fp = fingerprint(tmp_path / "d")
    assert (fp.n_images, fp.exact_duplicates, fp.near_duplicates) == (6, 1, 1)
    assert fp.groups == 4


def test_plan_cli_without_weights_and_with_a_budget_too_small(phantoms, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    """No encoder weights on disk: the plan still comes (random init), names the file that
    would help, and its recipe carries the predicted peak memory; a budget below one epoch
    exits 2 with one line giving the smallest budget that fits, and writes nothing."""
    import yaml

    monkeypatch.setattr(rules, "encoders_on_disk", lambda: [])
    out = tmp_path / "p.yaml"
    code, printed, err = run_cli(
        capsys, "plan", str(phantoms), "--budget", "20m", "--out", str(out)
    )
    assert code == 0, err
    assert "no encoder weights on disk: place resnet18-f37072fd.pth in" in printed
    doc = yaml.safe_load(out.read_text())
    assert doc["model"]["weights"] == "none" and doc["model"]["encoder"] == "resnet18"
    assert doc["model"]["encoder_lr_mult"] == 1.0  # random init: nothing to preserve
    assert doc["train"]["planned_peak_mb"] > 0
    text = out.read_text()
    assert f"peak memory ~{doc['train']['planned_peak_mb']} MB (host)" in text
    assert "# no encoder weights on disk: place resnet18-f37072fd.pth" in text
    small = tmp_path / "small.yaml"
    code, printed, err = run_cli(
        capsys, "plan", str(phantoms), "--budget", "1s", "--out", str(small)
    )
    errors = [line for line in err.splitlines() if line.startswith("medtl: error")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "--budget 1s is too small for one epoch" in errors[0]
    assert "the smallest budget that fits: " in errors[0] and not small.exists()


def test_patience_is_half_the_planned_epochs():
    """A cosine run improves late: early stopping waits half the planned epochs (BUSI's
    10-minute plan: 21 epochs, patience 10; its longest run without improvement was 5)."""
    from medtl.planning.choices import patience

    assert [patience(n, True).value for n in (7, 8, 21, 60)] == [0, 4, 10, 30]
    assert patience(21, False).value == 0 and "half the epochs" in patience(21, True).reason


@pytest.mark.parametrize(
    "task, n_images, pretrained, mult",
    [
        ("segmentation", 100, True, 0.1),  # two-stage (under 300 images): the default
        ("segmentation", 600, True, 1.0),  # fine-tuned segmentation: the decoder's lr
        ("multitask", 600, True, 0.1),  # a classifier: the default
        ("classification", 600, True, 0.1),
        ("classification", 600, False, 1.0),  # random init: the full lr
        ("segmentation", 100, False, 1.0),
    ],
)
def test_the_encoder_lr_follows_the_task_strategy_and_weights(task, n_images, pretrained, mult):
    """The planned encoder lr multiple, and the recipe says why; the config reads it back."""
    from medtl.configuration.loading import load_config

    fp = _fp(n_images=n_images, groups=n_images)
    plan = _decide(fp, task, 3600, "cpu", rules.Choice(128, "x"), [_measure()], 0, pretrained)
    choice = plan.keys["model.encoder_lr_mult"]
    assert choice.value == mult and choice.reason
    strategy = plan.value("model.strategy")
    assert strategy == ("two_stage" if pretrained and n_images < 300 else "finetune")
    cfg = load_config(None, [f"model.encoder_lr_mult={choice.value}"])
    assert cfg.model.encoder_lr_mult == mult


def test_plan_reads_the_data_as_its_keys_say_and_the_recipe_carries_them(
    phantoms, tmp_path, monkeypatch, capsys
):
    """``medtl plan DATA data.classes=[benign,malignant]`` plans on those classes' images
    (the fingerprint, the split sizes, no note on the left-out normals) and writes the key
    into plan.yaml, whose config keeps the same images; a key the audit does not read and a
    class the data lacks exit 2 with one line each, writing nothing."""
    import yaml

    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import load_samples

    monkeypatch.setattr(rules, "encoders_on_disk", lambda: [])
    out = tmp_path / "p.yaml"
    code, printed, err = run_cli(capsys, "plan", str(phantoms), "--budget", "20m", "--out",
                                 str(out), "data.classes=[benign,malignant]")  # fmt: skip
    assert code == 0, err
    text = out.read_text()
    assert "# 13 images (class_masks)" in text and "classes benign=9, malignant=4 " in text
    assert "every mask of normal" not in printed + text
    doc = yaml.safe_load(text)
    assert doc["data"]["classes"] == "benign,malignant"
    cfg = load_config(out)
    ds = load_samples(cfg)
    assert sorted({s.label for s in ds.samples}) == ["benign", "malignant"]
    assert len(ds.samples) == 13
    assert "layout" not in doc["data"]  # detected, not given: the recipe detects it again
    everything = tmp_path / "all.yaml"
    assert run_cli(capsys, "plan", str(phantoms), "--budget", "20m", "--out",
                   str(everything), "--layout", "class_masks")[0] == 0  # fmt: skip
    assert "# 16 images (class_masks)" in everything.read_text()
    assert yaml.safe_load(everything.read_text())["data"]["layout"] == "class_masks"
    for bad, says in [
        ("train.epochs=3", "medtl plan: 'train.epochs=3' is not a key the audit uses"),
        ("data.classes=benign,cyst", "data.classes names ['cyst'], not among"),
    ]:
        wrong = tmp_path / "wrong.yaml"
        code, printed, err = run_cli(
            capsys, "plan", str(phantoms), "--budget", "20m", "--out", str(wrong), bad
        )
        errors = [line for line in err.splitlines() if line.startswith("medtl: error")]
        assert code == 2 and len(errors) == 1 and says in errors[0], err
        assert not wrong.exists()
