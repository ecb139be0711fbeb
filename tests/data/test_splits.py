"""Splits and k-folds: fractions, stratification, groups, seeds, pre-made splits, splits.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medtl.data.layouts import Sample
from medtl.data.splits import kfold, load_splits, make_splits, save_splits
from medtl.utils.errors import DataError


def _samples(n, labels=None, groups=None, splits=None, masks=False):
    out = []
    for i in range(n):
        out.append(
            Sample(
                Path(f"img/{i:03d}.png"),
                (Path(f"msk/{i:03d}.png"),) if masks else (),
                label=labels[i] if labels else None,
                group=groups[i] if groups else None,
                split=splits[i] if splits else None,
            )
        )
    return out


def _check_partition(splits, n):
    tr, va, te = set(splits["train"]), set(splits["val"]), set(splits["test"])
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(range(n))
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == n


def test_fractions_disjoint_covering():
    s = _samples(50, masks=True)
    sp = make_splits(s, 0.2, 0.1, seed=0)
    _check_partition(sp, 50)
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (35, 10, 5)
    assert all(sp[k] == sorted(sp[k]) for k in sp)


def test_zero_test_fraction_gives_no_test():
    sp = make_splits(_samples(20), 0.25, 0.0, seed=1)
    assert sp["test"] == [] and len(sp["val"]) == 5 and len(sp["train"]) == 15


def test_stratified_class_proportions():
    labels = ["a"] * 30 + ["b"] * 12 + ["c"] * 7
    s = _samples(len(labels), labels=labels)
    for seed in range(5):
        sp = make_splits(s, 0.2, 0.2, seed=seed)
        _check_partition(sp, len(s))
        for part in ("val", "test"):
            counts = Counter(labels[i] for i in sp[part])
            for cls, n in Counter(labels).items():
                assert abs(counts[cls] - 0.2 * n) <= 1, (seed, part, cls, counts)


def test_many_small_classes_still_fill_val_and_test():
    # 3 classes x 2 images: each class alone would send its one spare image to val
    labels = ["a", "a", "b", "b", "c", "c"]
    sp = make_splits(_samples(6, labels=labels), 0.2, 0.2, seed=0)
    _check_partition(sp, 6)
    assert len(sp["val"]) >= 1 and len(sp["test"]) >= 1 and len(sp["train"]) >= 3


def test_grouped_never_straddle_on_many_seeds():
    # 20 patients with 1..4 slices each, two classes
    groups, labels = [], []
    for p in range(20):
        for _ in range(1 + p % 4):
            groups.append(f"patient{p}")
            labels.append("malignant" if p % 3 == 0 else "benign")
    s = _samples(len(groups), labels=labels, groups=groups)
    for seed in range(25):
        sp = make_splits(s, 0.2, 0.2, seed=seed)
        _check_partition(sp, len(s))
        side = {}
        for part, idx in sp.items():
            for i in idx:
                assert side.setdefault(groups[i], part) == part, (seed, groups[i])
        assert sp["val"] and sp["test"]


def test_deterministic_per_seed_and_varies_across_seeds():
    s = _samples(40, labels=["x", "y"] * 20)
    assert make_splits(s, 0.2, 0.2, seed=3) == make_splits(s, 0.2, 0.2, seed=3)
    vals = {tuple(make_splits(s, 0.2, 0.2, seed=k)["val"]) for k in range(6)}
    assert len(vals) >= 5


def test_premade_train_test_respected():
    splits = ["train"] * 20 + ["test"] * 6
    s = _samples(26, labels=["a", "b"] * 13, splits=splits)
    sp = make_splits(s, 0.25, 0.2, seed=0)
    _check_partition(sp, 26)
    assert sp["test"] == list(range(20, 26))  # untouched
    assert set(sp["val"]) <= set(range(20)) and len(sp["val"]) == 5  # 25% of train/


def test_premade_val_used_as_is():
    splits = ["train"] * 5 + ["val"] * 2 + ["test"] * 3
    sp = make_splits(_samples(10, splits=splits), 0.5, 0.2, seed=0)
    assert sp == {"train": [0, 1, 2, 3, 4], "val": [5, 6], "test": [7, 8, 9]}


def test_premade_train_only_carves_test_too():
    s = _samples(20, splits=["train"] * 20)
    sp = make_splits(s, 0.2, 0.2, seed=0)
    _check_partition(sp, 20)
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (12, 4, 4)


def test_tiny_dataset_cannot_be_split():
    with pytest.raises(DataError, match=r"1 images in 1 independent group;.*add images"):
        make_splits(_samples(1), 0.2, 0.2, seed=0)
    # everything in one group: val would be empty; the message says how it was formed
    with pytest.raises(DataError) as err:
        make_splits(_samples(5, groups=["p"] * 5), 0.2, 0.0, seed=0)
    assert "5 images in 1 independent group: 1 from a group column" in str(err.value)
    assert "largest 'p' with 5 images" in str(err.value)
    assert "data.group_pattern=none" in str(err.value)
    with pytest.raises(DataError, match=r"1 images in 1 independent group"):
        make_splits(_samples(2, splits=["train", "test"]), 0.2, 0.2, seed=0)
    # a pre-made split without its train folder names that, not a count
    with pytest.raises(DataError, match=r"no training images \(test=3\); put the training"):
        make_splits(_samples(3, splits=["test"] * 3), 0.2, 0.2, seed=0)


def test_kfold_disjoint_covering():
    s = _samples(23, labels=["a"] * 15 + ["b"] * 8)
    folds = kfold(s, 5, seed=0)
    assert len(folds) == 5
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(range(23))
    assert sum(len(v) for v in vals) == 23
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(range(23))
        assert not set(f["train"]) & set(f["val"])
        assert f["test"] == []
        assert len(f["val"]) in (4, 5)
        counts = Counter(s[i].label for i in f["val"])
        assert abs(counts["a"] - 3) <= 1 and abs(counts["b"] - 8 / 5) <= 1


def test_kfold_many_small_classes_no_empty_fold():
    # 10 classes x 3 images, k=5: dealing each class from fold 0 would leave folds 3-4 empty
    labels = [f"c{i // 3}" for i in range(30)]
    folds = kfold(_samples(30, labels=labels), 5, seed=0)
    assert sorted(len(f["val"]) for f in folds) == [6, 6, 6, 6, 6]


def test_kfold_grouped():
    groups = [f"g{i // 3}" for i in range(30)]  # 10 groups of 3
    s = _samples(30, groups=groups)
    for seed in range(5):
        folds = kfold(s, 4, seed=seed)
        for f in folds:
            val_groups = {groups[i] for i in f["val"]}
            train_groups = {groups[i] for i in f["train"]}
            assert not val_groups & train_groups
        assert sorted(len({groups[i] for i in f["val"]}) for f in folds) == [2, 2, 3, 3]


def test_kfold_errors():
    with pytest.raises(DataError, match=">= 2"):
        kfold(_samples(10), 1, seed=0)
    with pytest.raises(
        DataError, match="9 images in 3 independent groups: 3 from .* cannot fill 4 folds"
    ):
        kfold(_samples(9, groups=["a", "b", "c"] * 3), 4, seed=0)


def test_save_load_round_trip(tmp_path):
    s = _samples(12, labels=["a", "b"] * 6, groups=[f"p{i // 2}" for i in range(12)])
    sp = make_splits(s, 0.25, 0.25, seed=2)
    path = tmp_path / "run" / "splits.json"
    save_splits(path, s, sp, extra={"seed": 2})
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["counts"] == {k: len(v) for k, v in sp.items()}
    assert doc["seed"] == 2
    assert doc["val"][0] == {
        "image": str(s[sp["val"][0]].image),
        "label": "a" if sp["val"][0] % 2 == 0 else "b",
        "group": s[sp["val"][0]].group,
    }
    assert load_splits(path, s) == sp
    # re-mapped by path, not by position
    assert load_splits(path, list(reversed(s))) == {k: [11 - i for i in v] for k, v in sp.items()}


def test_load_splits_errors(tmp_path):
    s = _samples(6)
    with pytest.raises(DataError, match="not found") as err:
        load_splits(tmp_path / "splits.json", s)
    assert str(tmp_path / "splits.json") in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="bad.json"):
        load_splits(bad, s)
    path = tmp_path / "ok.json"
    save_splits(path, s, {"train": [0, 1, 2, 3], "val": [4, 5], "test": []})
    with pytest.raises(DataError, match="is no longer in the data") as err:
        load_splits(path, s[:5])
    assert str(s[5].image) in str(err.value)


def test_dicom_patients_that_cannot_be_split_are_named_as_such():
    """Two DICOM patients (PatientID groups): the error names them and asks for more
    patients, not for switching off a name pattern that was never used."""
    s = _samples(22, groups=["A"] * 20 + ["B"] * 2)
    for smp in s:
        smp.meta["patient"] = smp.group
    with pytest.raises(DataError) as err:
        make_splits(s, 0.5, 0.5, seed=0)
    msg = str(err.value)
    assert "2 from DICOM patients (PatientID, else StudyInstanceUID)" in msg
    assert "add images of more patients" in msg and "group_pattern" not in msg
