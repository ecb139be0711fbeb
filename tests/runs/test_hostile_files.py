"""Damaged or hostile files in a run folder (``calibration.json``, ``splits.json``,
``run.json``, ``eval/*/summary.json``, ``config.yaml``, ``export/export.json`` and the ONNX
graph's metadata): each is refused by the command that reads it (evaluate, report,
train.resume, predict --onnx) with exit code 2 and one line naming the file, and nothing
is written (no traceback, no half-written result).

One tiny multitask run (evaluated on its test split and exported to ONNX) is copied per
test (``model.pt`` and the checkpoints linked, not copied); each case then damages one file
and runs one command in this process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medtl.utils.errors import DataError
from medtl.utils.records import MAX_DEPTH
from tests.runs.hostile import DEEP, LIST, TAG, deep_json, refused, truncated


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


# ----------------------------------------------------------------------------- evaluate
CALIBRATION = {
    "as a list": LIST,
    "threshold a string": json.dumps({"seg_threshold": {"value": "0.3"}}),
    "threshold above 1": json.dumps({"seg_threshold": {"value": 1.5}}),
    "threshold NaN": '{"seg_threshold": {"value": NaN}}',
    "negative temperature": json.dumps({"temperature": {"value": -1.0}}),
    "temperature a mapping": json.dumps({"temperature": {"value": {"a": 1}}}),
    "operating point without per_class": json.dumps({"operating_point": {"rule": "youden"}}),
    "deep nesting": deep_json(),
    "truncated": '{"temperature": {"value": 1.2',
    "not UTF-8": b"\xff\xfe{}".decode("latin-1"),
}


@pytest.mark.parametrize("text", list(CALIBRATION.values()), ids=list(CALIBRATION))
def test_evaluate_refuses_a_damaged_calibration_json(run, capsys, text):
    path = run / "calibration.json"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    line = refused(capsys, run, "calibration.json", "evaluate", str(run), "--split", "test")
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
    "deep nesting": deep_json(),
    "truncated": '{"test": [{"image": "a.png"',
}


@pytest.mark.parametrize("text", list(SPLITS.values()), ids=list(SPLITS))
def test_evaluate_refuses_a_damaged_splits_json(run, capsys, text):
    (run / "splits.json").write_text(text)
    refused(capsys, run, "splits.json", "evaluate", str(run), "--split", "test")


RUN_JSON = {
    "as a list": LIST,
    "best_epoch a text": json.dumps({"best_epoch": "x"}),
    "epochs a text": json.dumps({"epochs": "many"}),
    "epoch without number": json.dumps({"epochs": [{"seconds": 1.0}]}),
    "data a list": json.dumps({"data": [1]}),
    "classes a mapping": json.dumps({"data": {"classes": {"a": 1}}}),
    "deep nesting": deep_json(),
    "deep but parseable": deep_json(MAX_DEPTH + 5),
    "truncated": '{"status": "finished", "epochs": [',
}


@pytest.mark.parametrize("text", list(RUN_JSON.values()), ids=list(RUN_JSON))
def test_evaluate_refuses_a_damaged_run_json(run, capsys, text):
    (run / "run.json").write_text(text)
    refused(capsys, run, "run.json", "evaluate", str(run), "--split", "test")


# ----------------------------------------------------------------------------- report
SUMMARY = {
    "as a list": LIST,
    "dice a text": None,  # filled in the test from the real file
    "threshold above 1": None,
    "per-label a list": None,
    "deep nesting": deep_json(),
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
        text = truncated(path.read_text())
    path.write_text(text if text is not None else json.dumps(doc))
    line = refused(capsys, run, "summary.json", "report", str(run))
    assert "medtl evaluate" in line  # the fix: evaluate again


def test_evaluate_refuses_another_splits_damaged_summary(run, capsys):
    """The model card reads every eval/*/summary.json: checked before evaluate writes."""
    shutil.copytree(run / "eval" / "test", run / "eval" / "val")
    (run / "eval" / "val" / "summary.json").write_text(LIST)
    refused(capsys, run, "summary.json", "evaluate", str(run), "--split", "test")


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
        refused(capsys, run, "config.yaml", "train", f"train.resume={run}")
    else:
        refused(capsys, run, "config.yaml", "report", str(run))


@pytest.mark.parametrize("name", ["run.json", "splits.json", "calibration.json"])
def test_report_refuses_a_run_file_as_a_list(run, capsys, name):
    (run / name).write_text(LIST)
    refused(capsys, run, name, "report", str(run))


# ----------------------------------------------------------------------------- train.resume
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("run.json", LIST),
        ("run.json", deep_json()),
        ("run.json", json.dumps({"unfreeze_epochs": ["a"]})),
        ("splits.json", LIST),
        ("config.yaml", TAG),
        ("config.yaml", LIST),
    ],
    ids=["run-list", "run-deep", "run-unfreeze-text", "splits-list", "config-tag", "config-list"],
)
def test_resume_refuses_damaged_files_before_touching_the_run(run, capsys, name, text):
    (run / name).write_text(text)
    refused(capsys, run, name, "train", f"train.resume={run}", "train.epochs=2")


# ----------------------------------------------------------------------------- predict --onnx
def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return path


EXPORT = {
    "as a list": LIST,
    "classes deep": json.dumps({"classes": None})[:-1].replace("null", deep_json(100_000)) + "}",
    "members a text": json.dumps({"ensemble": {"members": "abc"}}),
    "truncated": '{"task": "multitask", "classes": [',
}


@pytest.mark.parametrize("text", list(EXPORT.values()), ids=list(EXPORT))
def test_predict_onnx_refuses_a_damaged_export_json(run, capsys, tmp_path, text):
    (run / "export" / "export.json").write_text(text)
    out = tmp_path / "pred"
    args = ("predict", str(run), str(_image(tmp_path)), "--onnx", "--out", str(out))
    refused(capsys, run, "export.json", *args)
    assert not out.exists()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("image_size", "abc", "image_size"),
        ("image_size", "-3", "image_size"),
        ("classes", deep_json(100_000), "nested deeper"),
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
    line = refused(capsys, run, "model.onnx", *args)
    assert says in line and "medtl export" in line
    assert not out.exists()
