"""Data sets in the shapes they are published in: split folder names, name grouping on
evidence, the MSD/nnU-Net folder, NIfTI label maps of mixed dtypes, honest errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medtl.configuration.loading import Config, load_config
from medtl.data.audit.report import audit
from medtl.data.layouts import discover
from medtl.data.pipeline import load_samples
from medtl.data.splits import make_splits
from medtl.utils.errors import DataError
from tests.data.conftest import save, smooth_image

CLASSES = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def _brain_mri(root: Path, n_train: int = 10, n_test: int = 3) -> Path:
    """``Training/<class>/Tr-gl_0001.jpg`` + ``Testing/<class>/Te-gl_0001.jpg``."""
    seed = 0
    for folder, prefix, n in (("Training", "Tr", n_train), ("Testing", "Te", n_test)):
        for cls, short in CLASSES.items():
            for k in range(1, n + 1):
                seed += 1
                save(root / folder / cls / f"{prefix}-{short}_{k:04d}.jpg", smooth_image(seed, 32))
    return root


def test_brain_mri_training_testing_folders_split_without_name_groups(tmp_path):
    root = _brain_mri(tmp_path / "brain")
    ds = load_samples(Config(task="classification"), root)
    assert ds.layout == "imagefolder" and ds.classes == sorted(CLASSES)
    assert {s.split for s in ds.samples} == {"train", "test"} and ds.unused == []
    # 'Tr-gl' in Training/glioma is the class and split again, not a patient
    g = ds.grouping
    assert g["source"] == "none" and g["pattern"] is None
    assert g["sizes"] == {"min": 3, "median": 6.5, "max": 10}
    assert "8 groups reproduce the 8 class/split folders" in g["reason"]
    assert all(s.group is None for s in ds.samples)
    # as published, some names carry a variant tag (Tr-glTr_0001): still the folders
    for cls, short in CLASSES.items():
        for k in range(1, 5):
            save(root / "Training" / cls / f"Tr-{short}Tr_{k:04d}.jpg", smooth_image(k, 32))
    g = load_samples(Config(task="classification"), root).grouping
    assert g["source"] == "none" and "12 groups reproduce the 8 class/split folders" in g["reason"]
    splits = make_splits(ds.samples, 0.2, 0.2, seed=0)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (32, 8, 12)


def test_group_pattern_none_from_cli_yaml_and_api(tmp_path):
    assert load_config(overrides=["data.group_pattern=none"]).data.group_pattern == "none"
    assert load_config(overrides=["data.group_pattern=None"]).data.group_pattern == "none"
    assert load_config(overrides=["data.group_pattern=null"]).data.group_pattern is None
    yml = tmp_path / "c.yaml"
    yml.write_text("data:\n  group_pattern: none\n  window: none\n", encoding="utf-8")
    cfg = load_config(yml)
    assert cfg.data.group_pattern == "none" and cfg.data.window is None  # others: none = null
    from medtl.configuration.settings import config_from_settings

    assert config_from_settings(group_pattern="none").data.group_pattern == "none"
    # and it switches grouping off where the names would group
    root = tmp_path / "slices"
    for cls in ("a", "b"):
        for p in range(3):
            for k in range(2):
                save(root / cls / f"{cls}pat{p}_slice{k}.png", smooth_image(p * 5 + k, 32))
    cfg = load_config(overrides=["task=classification", "data.group_pattern=none"])
    ds = load_samples(cfg, root)
    assert ds.grouping["source"] == "none" and ds.grouping["reason"] == "data.group_pattern=none"
    assert load_samples(Config(task="classification"), root).grouping["n_groups"] == 6


def test_retinal_training_and_test_folders(tmp_path):
    root = tmp_path / "retina"
    for split, n in (("training", 4), ("test", 2)):
        for k in range(n):
            save(root / split / "images" / f"{k:02d}_{split}.tif", smooth_image(k, 32))
            mask = np.zeros((32, 32), np.uint8)
            mask[8:20, 8:20] = 255
            save(root / split / "masks" / f"{k:02d}_{split}.png", mask)
    save(root / "training" / "1st_manual" / "00_manual1.gif", np.zeros((32, 32), np.uint8))
    ds = discover(root)
    assert ds.layout == "paired"
    assert sorted({s.split for s in ds.samples}) == ["test", "train"] and len(ds.samples) == 6
    assert ds.unused == ["training/1st_manual/: 1 file (1 .gif) not used"]
    report = audit(root)
    assert report.unused == ds.unused
    assert "not used by layout 'paired': training/1st_manual/" in "\n".join(report.problems)
    assert "found but not used by the layout: 1" in report.format()


def test_unknown_split_name_is_named_with_the_fix(tmp_path):
    root = tmp_path / "odd"
    for k in range(3):
        save(root / "Train_set" / "images" / f"{k}.png", smooth_image(k, 32))
        save(root / "Train_set" / "masks" / f"{k}.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError) as err:
        discover(root)
    msg = str(err.value)
    assert "no known layout" in msg and "found: Train_set/images/ (3 .png)" in msg
    assert "rename Train_set/ to train/" in msg and "\n" not in msg
    flat = tmp_path / "flat"
    for k in range(2):
        save(flat / f"{k}.png", smooth_image(k, 32))
    with pytest.raises(DataError, match=r"found: \./ \(2 \.png\).*one folder per class"):
        discover(flat)
    named = tmp_path / "named"
    save(named / "images" / "a.png", smooth_image(1, 32))
    save(named / "groundtruth" / "a.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match="layout 'paired'.*rename groundtruth/ to masks/"):
        discover(named, "paired")


def _msd_json(root: Path, labels: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")


def test_msd_2d_png_with_channel_suffix_and_dataset_json(tmp_path):
    root = tmp_path / "Dataset101_Lesions"
    _msd_json(root, {"background": 0, "edema": 1, "tumour": 2})  # nnU-Net v2 form
    for k in range(6):
        case = f"case{k:03d}"
        save(root / "imagesTr" / f"{case}_0000.png", smooth_image(k, 32))
        save(root / "imagesTr" / f"{case}_0001.png", smooth_image(k + 50, 32))
        label = np.zeros((32, 32), np.uint8)
        label[4:12, 4:12] = 1
        label[16:24, 16:24] = 2
        save(root / "labelsTr" / f"{case}.png", label)
    save(root / "imagesTs" / "case100_0000.png", smooth_image(100, 32))
    ds = discover(root)
    assert ds.layout == "msd" and len(ds.samples) == 6
    assert all(s.image.name.endswith("_0000.png") and s.split is None for s in ds.samples)
    assert ds.label_names == {1: "edema", 2: "tumour"}
    assert ds.unused == [
        "imagesTr/: 6 files (6 .png) not used (beside used files)",
        "imagesTs/: 1 file (1 .png) not used",
    ]
    cfg = Config(task="segmentation")
    ds = load_samples(cfg, root)
    assert cfg.data.labels == "1:edema,2:tumour" and ds.mask_scheme.names == ("edema", "tumour")
    report = audit(root)
    assert [r["name"] for r in report.label_table] == ["background", "edema", "tumour"]


def test_msd_nifti_label_maps_of_mixed_dtypes(tmp_path):
    pytest.importorskip("nibabel")
    from medtl.data.readers.io import read_image, read_mask
    from tests.data.medical import write_nifti

    root = tmp_path / "Task01_Brain"
    _msd_json(root, {"0": "background", "1": "edema", "2": "enhancing"})  # MSD form
    rng = np.random.default_rng(0)
    shape = (16, 12, 5)
    images = {
        "brain_001": rng.integers(0, 256, shape).astype(np.uint8),
        "brain_002": (rng.random(shape) * 1.7e6).astype(np.float32),
        "brain_003": (rng.random(shape) * 0.01).astype(np.float32),
    }
    for k, (case, image) in enumerate(images.items()):
        write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image)
        label = np.zeros(shape, np.uint8 if k != 1 else np.float32)
        label[2:6, 2:6, 1] = 1
        label[8:12, 3:7, 2] = 2
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    ds = discover(root)
    assert ds.layout == "msd" and len(ds.samples) == 3 * shape[2]
    assert {s.group for s in ds.samples} == set(images)
    cfg = Config(task="segmentation")
    ds = load_samples(cfg, root)
    assert ds.mask_scheme.mode == "labels" and cfg.data.labels == "1:edema,2:enhancing"
    for case in images:
        s = next(x for x in ds.samples if x.group == case and x.meta["index"] == 2)
        grey = read_image(s.image)[..., 0].astype(float)
        # each volume stretched over 0..255 by its own range, whatever its dtype
        assert grey.max() >= 250 and grey.min() <= 5, case
        index = read_mask(s.masks, grey.shape, ds.mask_scheme)
        assert (index == 2).sum() == 16 and (index == 1).sum() == 0


def test_slices_export_keeps_label_values_and_names(tmp_path):
    pytest.importorskip("nibabel")
    from medtl.data.slices import write_slices
    from tests.data.medical import write_nifti

    root = tmp_path / "vols"
    label = np.zeros((8, 8, 3), np.uint8)
    label[1:3, 1:3, 1] = 1
    label[4:6, 4:6, 1] = 3
    write_nifti(root / "images" / "c1.nii.gz", np.arange(192, dtype=np.float32).reshape(8, 8, 3))
    write_nifti(root / "labels" / "c1.nii.gz", label)
    (root / "labels.yaml").write_text("1: liver\n3: lesion\n", encoding="utf-8")
    out = tmp_path / "out"
    write_slices(root, out)
    from PIL import Image

    mask = np.asarray(Image.open(out / "masks" / "c1_slice0001.png"))
    assert sorted(np.unique(mask).tolist()) == [0, 1, 3]
    assert (out / "labels.yaml").read_text(encoding="utf-8") == '1: "liver"\n3: "lesion"\n'


def test_brain_mri_trains_from_the_cli_and_records_the_grouping(tmp_path, capsys):
    from tests.conftest import TINY, run_cli

    root = _brain_mri(tmp_path / "brain", n_train=4, n_test=2)
    out = tmp_path / "runs"
    code, _, err = run_cli(
        capsys, "train", f"data.root={root}", f"output.dir={out}", "task=classification",
        "output.name=brain", *TINY,
    )  # fmt: skip
    assert code == 0, err
    facts = json.loads((out / "brain" / "run.json").read_text(encoding="utf-8"))
    grouping = facts["data"]["grouping"]
    assert grouping["source"] == "none" and "class/split folders" in grouping["reason"]
    assert grouping["sizes"] == {"min": 2, "median": 3, "max": 4}


def _half_res_masks(root: Path, labels: bool = False) -> Path:
    for k in range(6):
        save(root / "images" / f"img{k}.png", smooth_image(k, 48)[:, :40].copy())  # 40x48
        mask = np.zeros((24, 20), np.uint8)  # half: the same aspect ratio
        mask[4:12, 4:10] = 1 if labels else 255
        if labels:
            mask[14:20, 10:16] = 2
        save(root / "masks" / f"img{k}.png", mask)
    return root


def test_mask_resize_nearest_for_half_resolution_masks(tmp_path):
    from medtl.data.readers.io import read_mask

    root = _half_res_masks(tmp_path / "half")
    s = discover(root).samples[0]
    with pytest.raises(
        DataError,
        match="mask size 20x24 differs from its image 40x48; set data.mask_resize=nearest",
    ):
        read_mask(s.masks, (48, 40))
    cfg = load_config(overrides=["data.mask_resize=nearest"])
    ds = load_samples(cfg, root)
    assert ds.mask_scheme.resize == "nearest"  # the decided scheme carries it to reads
    mask = read_mask(ds.samples[0].masks, (48, 40), ds.mask_scheme)
    assert mask.shape == (48, 40) and mask.sum() == 4 * 8 * 6  # each pixel doubled
    assert mask[8:24, 8:20].all() and not mask[24:, :].any()
    with pytest.raises(DataError, match="aspect ratio differs too"):
        read_mask(ds.samples[0].masks, (48, 48), ds.mask_scheme)
    with pytest.raises(DataError, match="set data.mask_resize=nearest"):
        read_mask(ds.samples[0].masks, (48, 40))  # no scheme: no resize, whatever was loaded
    with pytest.raises(Exception, match="data.mask_resize"):
        load_config(overrides=["data.mask_resize=bilinear"])


def test_mask_resize_of_two_loads_in_one_process_independent(tmp_path):
    """data.mask_resize travels with each data set's scheme: a load with ``none`` after one
    with ``nearest`` refuses the half-size masks, and the first data set still reads them
    resized afterwards (in either order)."""
    from medtl.data.cache.decode import read_originals
    from medtl.data.pipeline import prepare

    root = _half_res_masks(tmp_path / "half")
    size = ["data.image_size=32", "data.group_duplicates=false"]
    nearest = prepare(load_config(overrides=[*size, "data.mask_resize=nearest"]), root)
    with pytest.raises(DataError, match="mask size 20x24 differs.*set data.mask_resize=nearest"):
        prepare(load_config(overrides=size), root)
    ds = nearest.dataset
    _, mask = read_originals(ds.samples, [0], None, None, ds.mask_scheme)[0]
    assert mask.shape == (48, 40) and mask.sum() == 4 * 8 * 6
    assert nearest.cache.masks[0].sum() > 0  # decoded at 32 px from the resized mask
    again = prepare(load_config(overrides=[*size, "data.mask_resize=nearest"]), root)
    assert (again.cache.masks == nearest.cache.masks).all()


def test_audit_label_table_names_skipped_masks(tmp_path):
    root = _half_res_masks(tmp_path / "labels", labels=True)
    report = audit(root)
    assert report.mask_interpretation["skipped"]["masks"] == 6
    assert "data.mask_resize=nearest" in report.mask_interpretation["skipped"]["why"]
    text = report.format()
    assert "0 of the counted images (6 skipped)" in text and " 0 images" not in text
    assert "label table leaves out 6 images' masks: 6 of another size" in text
    lines = "\n".join(report.problems)
    assert (
        "label 1 (label_1): in none of the 0 images counted; 6 images' masks were skipped" in lines
    )
    assert "in 0 of" not in lines and "; data.mask_resize=nearest resizes it" in lines


def test_test_folder_alone_names_the_folder_not_used(tmp_path):
    root = tmp_path / "retina"
    for split in ("Training_set", "test"):
        for k in range(3):
            save(root / split / "images" / f"{k}.png", smooth_image(k, 32))
            save(root / split / "masks" / f"{k}.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError) as err:
        load_samples(load_config(overrides=[f"data.root={root}"]))
    msg = str(err.value)
    assert "layout 'paired' found only test=3 images and no training images" in msg
    assert "not used: Training_set/: 6 files (6 .png) not used" in msg
