"""Damaged or hostile files in a comparison folder (``compare.json``, ``results.json``),
a data folder (``labels.yaml``/``labels.json``) and the disk cache (``meta.json``), and the
bounded reader itself (:mod:`medtl.utils.records`): refused with exit code 2 and one line
naming the file, nothing written; the cache, derived data, is decoded again."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from medtl.utils.errors import DataError
from medtl.utils.records import MAX_DEPTH, Shape, depth, load_json, load_yaml
from tests.conftest import run_cli
from tests.runs.hostile import DEEP, LIST, deep_json, refused, snapshot


# ----------------------------------------------------------------------------- comparison
def _comparison(tmp_path: Path) -> Path:
    """A comparison folder with its design and results files (no trained cells)."""
    out = tmp_path / "cmp"
    out.mkdir()
    design = {
        "format": "medtl-compare-1",
        "base_overrides": [],
        "grid": ["model.encoder=resnet18"],
        "config_file": None,
        "folds": 2,
        "eval_split": "val",
        "seed": 0,
        "train_seed": 0,
        "task": "segmentation",
        "cells": [{"id": "a", "overrides": ["model.encoder=resnet18"]}],
        "splits": [{"train": ["x.png"], "val": ["y.png"], "test": []}],
        "n_images": 2,
    }
    (out / "compare.json").write_text(json.dumps(design))
    results = {"format": "medtl-results-1", "configs": [{"cell": "a", "rank": 1}]}
    (out / "results.json").write_text(json.dumps(results))
    return out


DESIGN = {
    "as a list": LIST,
    "cells a text": {"cells": "abc"},
    "folds a text": {"folds": "two"},
    "unknown task": {"task": "detection"},
    "deep nesting": deep_json(),
    "truncated": '{"task": "segmentation", "cells": [',
}


@pytest.mark.parametrize("case", list(DESIGN))
def test_report_refuses_a_damaged_compare_json(tmp_path, capsys, case):
    out = _comparison(tmp_path)
    value = DESIGN[case]
    if isinstance(value, dict):
        value = json.dumps({**json.loads((out / "compare.json").read_text()), **value})
    (out / "compare.json").write_text(value)
    refused(capsys, out, "compare.json", "report", str(out))


RESULTS = {
    "as a list": LIST,
    "configs a text": json.dumps({"configs": "abc"}),
    "rank a text": json.dumps({"configs": [{"cell": "a", "rank": "1"}]}),
    "config without cell": json.dumps({"configs": [{"rank": 1}]}),
    "deep nesting": deep_json(),
    "truncated": '{"configs": [{"cell": "a", "ra',
}


@pytest.mark.parametrize("text", list(RESULTS.values()), ids=list(RESULTS))
def test_report_and_evaluate_refuse_a_damaged_results_json(tmp_path, capsys, text):
    out = _comparison(tmp_path)
    (out / "results.json").write_text(text)
    line = refused(capsys, out, "results.json", "report", str(out))
    assert "medtl compare --collect" in line
    refused(capsys, out, "results.json", "evaluate", str(out), "--config", "1")


# ----------------------------------------------------------------------------- data folder
@pytest.fixture(scope="module")
def label_data(tmp_path_factory) -> Path:
    from medtl.data.phantoms import make_label_phantoms

    return make_label_phantoms(tmp_path_factory.mktemp("lab") / "ph2", n=8, size=32, labels=2)


LABELS = {
    "labels.yaml": {
        "a YAML tag": "1: !!python/object/apply:os.system ['echo pwned']\n",
        "syntax error": "1: lesion\n2: [ring\n",
        "deep nesting": "[" * DEEP + "]" * DEEP,
        "a list": "- lesion\n- ring\n",
        "value not a number": "one: lesion\n",
    },
    "labels.json": {"truncated": '{"1": "lesion", "2": "ri', "name a list": '{"1": [1]}'},
}
LABEL_CASES = [(name, text) for name, cases in LABELS.items() for text in cases.values()]
LABEL_IDS = [f"{name}-{case}" for name, cases in LABELS.items() for case in cases]


@pytest.mark.parametrize(("name", "text"), LABEL_CASES, ids=LABEL_IDS)
def test_audit_and_train_refuse_a_damaged_labels_file(label_data, tmp_path, capsys, name, text):
    data = tmp_path / "data"
    shutil.copytree(label_data, data)
    for old in ("labels.yaml", "labels.yml", "labels.json"):
        (data / old).unlink(missing_ok=True)
    (data / name).write_text(text)
    before = snapshot(data)
    code, out_text, err = run_cli(capsys, "audit", str(data))  # a report: lists the problem
    said = [line for line in out_text.splitlines() if "training would stop" in line]
    assert code == 0 and "Traceback" not in err and snapshot(data) == before
    assert len(said) == 1 and f"{data / name}: " in said[0], out_text
    out = tmp_path / "runs"
    args = ("train", f"data.root={data}", f"output.dir={out}", "data.image_size=32")
    refused(capsys, data, name, *args, "train.epochs=1", "model.weights=none")
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- disk cache
@pytest.mark.parametrize("text", [LIST, deep_json(), '{"format": ', '{"sizes": "x"}'])
def test_a_damaged_disk_cache_meta_is_rebuilt(tmp_path, monkeypatch, text):
    """The cache is derived data: a damaged meta.json is decoded again (a warning), never
    a traceback."""
    from medtl.data.cache.decode import DecodeSpec
    from medtl.data.cache.modes import CACHE_ENV, cached_samples, fingerprint
    from medtl.data.layouts import discover
    from medtl.data.phantoms import make_phantoms

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    samples = discover(make_phantoms(tmp_path / "d", n=4, size=32, seed=1)).samples
    spec = DecodeSpec(size=32, with_masks=True)
    cached_samples(samples, spec, mode="disk")
    meta = tmp_path / "cache" / fingerprint(samples, spec) / "meta.json"
    meta.write_text(text)
    rebuilt = cached_samples(samples, spec, mode="disk")
    assert rebuilt.mode == "disk" and json.loads(meta.read_text())["n"] == 4


# ----------------------------------------------------------------------------- the reader
def test_depth_counts_without_recursion_and_stops_at_the_limit():
    deep: list = []
    for _ in range(DEEP):
        deep = [deep]
    assert depth(deep) == MAX_DEPTH + 1  # stopped once past the limit
    assert depth({"a": [1, {"b": 2}]}) == 3 and depth(5) == 0


def test_yaml_aliases_do_not_expand(tmp_path):
    """A 'billion laughs' document loads as shared references and is walked once."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert set(load_yaml(path, "fix")) == set("abcdefghi")


def test_size_limit_and_one_line_messages(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(list(range(1000))))
    with pytest.raises(DataError, match=r"big.json: \d+ bytes, more than the 100 .*; delete it$"):
        load_json(path, "delete it", max_bytes=100)
    path.write_text('{"a": ' * 10)
    with pytest.raises(DataError) as got:
        load_json(path, "delete it")
    assert "\n" not in str(got.value) and "is not valid JSON" in str(got.value)


def test_shape_checks_name_the_field():
    shape = Shape("x.json", "fix it")
    assert shape.number(0.25, "t", 0, 1) == 0.25
    with pytest.raises(
        DataError, match=r"x.json: t is a text, expected a number in \[0, 1\]; fix it"
    ):
        shape.number("0.3", "t", 0, 1)
    with pytest.raises(DataError, match=r"t is nan"):
        shape.number(math.nan, "t", 0, 1)
    with pytest.raises(DataError, match=r"a.b is a text, expected a number"):
        shape.numbers({"b": "no"}, "a")
    assert shape.numbers({"rule": "given", "ci": [0.1, None]}, "a") == {
        "rule": "given",
        "ci": [0.1, None],
    }


@pytest.mark.parametrize("name", ["env.json", ".medtl.lock"])
def test_lenient_records_survive_deep_nesting(tmp_path, name):
    """``env.json`` and the lock file are read leniently (unreadable: none), deep nesting too."""
    from medtl.utils.files import read_records
    from medtl.utils.locks import LOCK_FILE, lock_holder

    if name != "env.json":
        name = LOCK_FILE
    (tmp_path / name).write_text(deep_json())
    assert read_records(tmp_path / "env.json") == [] and lock_holder(tmp_path) is None
