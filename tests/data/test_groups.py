"""Patient groups from file names: data.group_pattern, auto-detection, the leak it closes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medtl.configuration.loading import Config
from medtl.data.groups import group_by_names, looks_like_slices
from medtl.data.layouts import Sample
from medtl.data.pipeline import apply_names_and_intensity, load_samples
from medtl.data.splits import make_splits
from medtl.utils.errors import ConfigError, DataError
from tests.data.conftest import save, smooth_image


def _samples(names, folder="images", label=None):
    return [Sample(Path(folder) / f"{n}.png", label=label) for n in names]


def test_auto_detects_slice_names_and_logs(caplog):
    names = [f"patient{p:03d}_slice{k:02d}" for p in range(4) for k in range(3)]
    with caplog.at_level(logging.INFO, logger="medtl"):
        out, decision = group_by_names(_samples(names))
    assert {s.group for s in out} == {f"patient{p:03d}" for p in range(4)}
    assert decision.to_dict() == {
        "source": "auto",
        "pattern": r"^(.+?)[_-]slice[_-]?\d+$",
        "n_groups": 4,
        "n_images": 12,
        "sizes": {"min": 3, "median": 3, "max": 3},
        "reason": "many groups of a few images each, not the folders",
    }
    assert "12 images in 4 groups" in caplog.text and "median 3" in caplog.text


def test_auto_detects_id_number_names():
    out, decision = group_by_names(_samples(["a7_1", "a7_2", "b2_1", "b2_2", "c9_1"]))
    assert [s.group for s in out] == ["a7", "a7", "b2", "b2", "c9"]
    assert decision.pattern == r"^(.+?)[_-]\d+$"


@pytest.mark.parametrize(
    "names, folder",
    [
        ([f"img_{i:03d}" for i in range(10)], "images"),  # one 'patient' holding everything
        ([f"benign_{i:04d}" for i in range(4)] + [f"malignant_{i:04d}" for i in range(4)], "x"),
        ([f"scan{i}" for i in range(6)], "images"),  # no pattern at all
    ],
)
def test_auto_detection_leaves_non_patient_names_alone(names, folder):
    samples = (
        [Sample(Path(n.split("_")[0]) / f"{n}.png") for n in names]
        if folder == "x"
        else _samples(names)
    )
    out, decision = group_by_names(samples)
    assert decision.source == "none" and all(s.group is None for s in out)


def test_explicit_pattern_and_existing_groups_kept():
    samples = _samples(["P01-T1-a", "P01-T2-a", "P02-T1-a"])
    samples.append(Sample(Path("x.png"), group="csv-group"))
    out, decision = group_by_names(samples, r"^(P\d+)-")
    assert [s.group for s in out] == ["P01", "P01", "P02", "csv-group"]
    assert decision.source == "data.group_pattern" and decision.n_groups == 2


def test_pattern_matching_nothing_is_one_line():
    with pytest.raises(DataError, match="matches none of the image names") as err:
        group_by_names(_samples(["a_1", "b_1"]), r"^case(\d+)")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="does not match") as err:
        group_by_names(_samples(["case1_a", "other"]), r"^case(\d+)")
    assert "other.png" in str(err.value)
    with pytest.raises(ConfigError, match="needs a"):
        group_by_names(_samples(["a_1"]), r"^case\d+")


def test_looks_like_slices_for_the_audit():
    # two patients' slices, but the second one's names break the pattern: no auto grouping
    samples = _samples(["p1_slice1", "p1_slice2", "p2slice1", "p2slice2"])
    out, decision = group_by_names(samples)
    assert decision.source == "none"
    warning = looks_like_slices(out, decision)
    assert warning and "4 image names look like slices" in warning and "group_pattern" in warning
    grouped, decision = group_by_names(samples, r"^(p\d)_?slice")
    assert looks_like_slices(grouped, decision) is None
    assert looks_like_slices(_samples(["x", "y"]), group_by_names(_samples(["x", "y"]))[1]) is None


def test_pipeline_keeps_a_patients_slices_together(tmp_path):
    # the DCE-MRI file names: patient001_slice01.png, classification by folder
    for cls in ("benign", "malignant"):
        for p in range(5):
            for k in range(3):
                save(
                    tmp_path / cls / f"{cls[0]}patient{p:03d}_slice{k:02d}.png",
                    smooth_image(p * 7 + k),
                )
    ds = load_samples(Config(task="classification"), tmp_path)
    assert ds.grouping["source"] == "auto" and ds.grouping["n_groups"] == 10
    splits = make_splits(ds.samples, 0.2, 0.2, seed=0)
    side = {}
    for name, idx in splits.items():
        for i in idx:
            assert side.setdefault(ds.samples[i].group, name) == name
    # "none" switches names off
    apply_names_and_intensity(
        ds := load_samples(Config(task="classification"), tmp_path), None, None
    )
    ds.samples = [Sample(s.image, label=s.label) for s in ds.samples]
    apply_names_and_intensity(ds, "none", None)
    assert ds.grouping["source"] == "none" and all(s.group is None for s in ds.samples)


@pytest.mark.parametrize(
    "module",
    ["readers.dicom", "groups", "refs", "readers.volumes", "layouts.msd", "layouts.explain"],
)
def test_module_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"medtl.data.{module}"))
    assert result.failed == 0 and result.attempted > 0
