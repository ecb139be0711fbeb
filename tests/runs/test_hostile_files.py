"""Damaged or hostile files in a run, comparison or data folder: each is refused by the
command that reads it with exit code 2 and one line naming the file, and nothing is
written (no traceback, no half-written result).

One tiny multitask run (evaluated on its test split and exported to ONNX) is copied per
test (``model.pt`` and the checkpoints linked, not copied); each case then damages one file
and runs one command in this process.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from medtl.utils.errors import DataError
from medtl.utils.records import MAX_DEPTH, Shape, depth, load_json, load_yaml
from tests.conftest import run_cli

DEEP = 200_000
LIST = "[1, 2, 3]\n"
TAG = "train: !!python/object/apply:os.system ['echo pwned']\n"


def _deep_json(n: int = DEEP) -> str:
    return "[" * n + "]" * n


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base_run(mt_run, tmp_path_factory) -> Path:
    """A copy of the session's multitask run, evaluated (test) and exported to ONNX."""
    run = tmp_path_factory.mktemp("hostile") / "mt"
    shutil.copytree(mt_run, run, ignore=shutil.ignore_patterns("eval", "export", "report.html"))
    from medtl.cli.parser import main

    assert main(["evaluate", str(run), "--split", "test", "--no-plots"]) == 0
    assert main(["export", str(run)]) == 0
    return run


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    """This test's own copy of :func:`base_run` (large files linked)."""
    dst = tmp_path / "run"
    linked = {"model.pt", "checkpoints"}
    shutil.copytree(base_run, dst, ignore=lambda d, names: linked if d == str(base_run) else ())
    for name in linked:
        (dst / name).symlink_to(base_run / name, target_is_directory=name == "checkpoints")
    return dst


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _refused(capsys, folder: Path, names: str, *args: str) -> str:
    """Run ``medtl ARGS``; assert exit 2, one line on stderr naming ``names`` (the damaged
    file's name), no traceback, and no file under ``folder`` changed; returns the line."""
    before = _snapshot(folder)
    code, _out, err = run_cli(capsys, *args)
    lines = [line for line in err.strip().splitlines() if line.startswith("medtl: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
    assert _snapshot(folder) == before
    return lines[0]


# ----------------------------------------------------------------------------- evaluate
CALIBRATION = {
    "as a list": LIST,
    "threshold a string": json.dumps({"seg_threshold": {"value": "0.3"}}),
    "threshold above 1": json.dumps({"seg_threshold": {"value": 1.5}}),
    "threshold NaN": '{"seg_threshold": {"value": NaN}}',
    "negative temperature": json.dumps({"temperature": {"value": -1.0}}),
    "temperature a mapping": json.dumps({"temperature": {"value": {"a": 1}}}),
    "operating point without per_class": json.dumps({"operating_point": {"rule": "youden"}}),
    "deep nesting": _deep_json(),
    "truncated": '{"temperature": {"value": 1.2',
    "not UTF-8": b"\xff\xfe{}".decode("latin-1"),
}


@pytest.mark.parametrize("text", list(CALIBRATION.values()), ids=list(CALIBRATION))
def test_evaluate_refuses_a_damaged_calibration_json(run, capsys, text):
    path = run / "calibration.json"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    line = _refused(capsys, run, "calibration.json", "evaluate", str(run), "--split", "test")
    assert "medtl evaluate" in line and "--calibrate" in line  # the fix


def test_threshold_outside_0_1_is_one_line(run):
    from medtl.inference.decisions import seg_threshold_of

    (run / "calibration.json").write_text(json.dumps({"seg_threshold": {"value": 1.5}}))
    with pytest.raises(
        DataError, match=r"seg_threshold.value is 1.5, expected a number in \[0, 1\]"
    ):
        seg_threshold_of(run)


SPLITS = {
    "as a list": LIST,
    "split a text": json.dumps({"train": [], "val": [], "test": "abc"}),
    "entry without image": json.dumps({"test": [{"label": "benign"}]}),
    "image a number": json.dumps({"test": [{"image": 3}]}),
    "deep nesting": _deep_json(),
    "truncated": '{"test": [{"image": "a.png"',
}


@pytest.mark.parametrize("text", list(SPLITS.values()), ids=list(SPLITS))
def test_evaluate_refuses_a_damaged_splits_json(run, capsys, text):
    (run / "splits.json").write_text(text)
    _refused(capsys, run, "splits.json", "evaluate", str(run), "--split", "test")


RUN_JSON = {
    "as a list": LIST,
    "best_epoch a text": json.dumps({"best_epoch": "x"}),
    "epochs a text": json.dumps({"epochs": "many"}),
    "epoch without number": json.dumps({"epochs": [{"seconds": 1.0}]}),
    "data a list": json.dumps({"data": [1]}),
    "classes a mapping": json.dumps({"data": {"classes": {"a": 1}}}),
    "deep nesting": _deep_json(),
    "deep but parseable": _deep_json(MAX_DEPTH + 5),
    "truncated": '{"status": "finished", "epochs": [',
}


@pytest.mark.parametrize("text", list(RUN_JSON.values()), ids=list(RUN_JSON))
def test_evaluate_refuses_a_damaged_run_json(run, capsys, text):
    (run / "run.json").write_text(text)
    _refused(capsys, run, "run.json", "evaluate", str(run), "--split", "test")


# ----------------------------------------------------------------------------- report
SUMMARY = {
    "as a list": LIST,
    "dice a text": None,  # filled in the test from the real file
    "threshold above 1": None,
    "per-label a list": None,
    "deep nesting": _deep_json(),
    "truncated": None,
}


@pytest.mark.parametrize("case", list(SUMMARY))
def test_report_refuses_a_damaged_summary_json(run, capsys, case):
    path = run / "eval" / "test" / "summary.json"
    doc = json.loads(path.read_text())
    text = SUMMARY[case]
    if case == "dice a text":
        doc["segmentation"]["dice"]["mean"] = "abc"
    elif case == "threshold above 1":
        doc["seg_threshold"] = {"value": 2, "rule": "given"}
    elif case == "per-label a list":
        doc["segmentation_per_label"] = {"lesion": [1, 2]}
    elif case == "truncated":
        text = _truncated(path.read_text())
    path.write_text(text if text is not None else json.dumps(doc))
    line = _refused(capsys, run, "summary.json", "report", str(run))
    assert "medtl evaluate" in line  # the fix: evaluate again


def test_evaluate_refuses_another_splits_damaged_summary(run, capsys):
    """The model card reads every eval/*/summary.json: checked before evaluate writes."""
    shutil.copytree(run / "eval" / "test", run / "eval" / "val")
    (run / "eval" / "val" / "summary.json").write_text(LIST)
    _refused(capsys, run, "summary.json", "evaluate", str(run), "--split", "test")


CONFIG = {
    "as a list": LIST,
    "a YAML tag": TAG,
    "syntax error": "data: [1, 2\ntrain: {\n",
    "deep nesting": "[" * DEEP + "]" * DEEP,
    "section a text": "data: hello\n",
    "wrong value type": None,  # image_size: abc, in the real file
}


@pytest.mark.parametrize("case", list(CONFIG))
def test_report_refuses_a_damaged_config_yaml(run, capsys, case):
    path = run / "config.yaml"
    text = CONFIG[case]
    if text is None:
        text = path.read_text().replace("image_size: 32", "image_size: abc")
    path.write_text(text)
    if case == "wrong value type":  # the page shows the config as text; resume reads it
        _refused(capsys, run, "config.yaml", "train", f"train.resume={run}")
    else:
        _refused(capsys, run, "config.yaml", "report", str(run))


@pytest.mark.parametrize("name", ["run.json", "splits.json", "calibration.json"])
def test_report_refuses_a_run_file_as_a_list(run, capsys, name):
    (run / name).write_text(LIST)
    _refused(capsys, run, name, "report", str(run))


# ----------------------------------------------------------------------------- train.resume
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("run.json", LIST),
        ("run.json", _deep_json()),
        ("run.json", json.dumps({"unfreeze_epochs": ["a"]})),
        ("splits.json", LIST),
        ("config.yaml", TAG),
        ("config.yaml", LIST),
    ],
    ids=["run-list", "run-deep", "run-unfreeze-text", "splits-list", "config-tag", "config-list"],
)
def test_resume_refuses_damaged_files_before_touching_the_run(run, capsys, name, text):
    (run / name).write_text(text)
    _refused(capsys, run, name, "train", f"train.resume={run}", "train.epochs=2")


# ----------------------------------------------------------------------------- predict --onnx
def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return path


EXPORT = {
    "as a list": LIST,
    "classes deep": json.dumps({"classes": None})[:-1].replace("null", _deep_json(100_000)) + "}",
    "members a text": json.dumps({"ensemble": {"members": "abc"}}),
    "truncated": '{"task": "multitask", "classes": [',
}


@pytest.mark.parametrize("text", list(EXPORT.values()), ids=list(EXPORT))
def test_predict_onnx_refuses_a_damaged_export_json(run, capsys, tmp_path, text):
    (run / "export" / "export.json").write_text(text)
    out = tmp_path / "pred"
    args = ("predict", str(run), str(_image(tmp_path)), "--onnx", "--out", str(out))
    _refused(capsys, run, "export.json", *args)
    assert not out.exists()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("image_size", "abc", "image_size"),
        ("image_size", "-3", "image_size"),
        ("classes", _deep_json(100_000), "nested deeper"),
        ("classes", '{"a": 1}', "classes"),
        ("temperature", "warm", "temperature"),
    ],
    ids=["size-text", "size-negative", "classes-deep", "classes-mapping", "temperature-text"],
)
def test_predict_onnx_refuses_hostile_graph_metadata(run, capsys, tmp_path, key, value, says):
    import onnx

    path = run / "export" / "model.onnx"
    model = onnx.load(str(path))
    entries = {p.key: p.value for p in model.metadata_props}
    entries[f"medtl.{key}"] = value
    del model.metadata_props[:]
    for k, v in entries.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    out = tmp_path / "pred"
    args = ("predict", str(run), str(_image(tmp_path)), "--onnx", "--out", str(out))
    line = _refused(capsys, run, "model.onnx", *args)
    assert says in line and "medtl export" in line
    assert not out.exists()


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
    "deep nesting": _deep_json(),
    "truncated": '{"task": "segmentation", "cells": [',
}


@pytest.mark.parametrize("case", list(DESIGN))
def test_report_refuses_a_damaged_compare_json(tmp_path, capsys, case):
    out = _comparison(tmp_path)
    value = DESIGN[case]
    if isinstance(value, dict):
        value = json.dumps({**json.loads((out / "compare.json").read_text()), **value})
    (out / "compare.json").write_text(value)
    _refused(capsys, out, "compare.json", "report", str(out))


RESULTS = {
    "as a list": LIST,
    "configs a text": json.dumps({"configs": "abc"}),
    "rank a text": json.dumps({"configs": [{"cell": "a", "rank": "1"}]}),
    "config without cell": json.dumps({"configs": [{"rank": 1}]}),
    "deep nesting": _deep_json(),
    "truncated": '{"configs": [{"cell": "a", "ra',
}


@pytest.mark.parametrize("text", list(RESULTS.values()), ids=list(RESULTS))
def test_report_and_evaluate_refuse_a_damaged_results_json(tmp_path, capsys, text):
    out = _comparison(tmp_path)
    (out / "results.json").write_text(text)
    line = _refused(capsys, out, "results.json", "report", str(out))
    assert "medtl compare --collect" in line
    _refused(capsys, out, "results.json", "evaluate", str(out), "--config", "1")


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
    before = _snapshot(data)
    code, out_text, err = run_cli(capsys, "audit", str(data))  # a report: lists the problem
    said = [line for line in out_text.splitlines() if "training would stop" in line]
    assert code == 0 and "Traceback" not in err and _snapshot(data) == before
    assert len(said) == 1 and f"{data / name}: " in said[0], out_text
    out = tmp_path / "runs"
    args = ("train", f"data.root={data}", f"output.dir={out}", "data.image_size=32")
    _refused(capsys, data, name, *args, "train.epochs=1", "model.weights=none")
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- disk cache
@pytest.mark.parametrize("text", [LIST, _deep_json(), '{"format": ', '{"sizes": "x"}'])
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
    (tmp_path / name).write_text(_deep_json())
    assert read_records(tmp_path / "env.json") == [] and lock_holder(tmp_path) is None
