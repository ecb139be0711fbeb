"""NIfTI volumes end to end: slices export + audit, training on a volumes data set, a volume
predicted into a label volume with the input's affine, CLI errors for bad volumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medtl.cli.parser import main  # noqa: E402
from tests.conftest import train_tiny  # noqa: E402
from tests.data.medical import write_nifti  # noqa: E402

SHAPE = (32, 32, 6)


@pytest.fixture(scope="module")
def vols(tmp_path_factory):
    root = tmp_path_factory.mktemp("vols")
    rng = np.random.default_rng(0)
    for i in range(5):
        image = rng.normal(100, 10, SHAPE).astype(np.float32)
        label = np.zeros(SHAPE, np.uint8)
        label[8 + i : 20, 10:22, 2:5] = 1
        image[label > 0] += 60
        write_nifti(root / "images" / f"case{i:02d}.nii.gz", image)
        write_nifti(root / "labels" / f"case{i:02d}.nii.gz", label)
    return root


def test_slices_then_audit_groups_are_volumes(vols, tmp_path, capsys):
    assert main(["slices", str(vols), str(tmp_path / "slices")]) == 0
    assert "30 slices of 5 volumes" in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "slices"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["grouping"]["groups_in_force"] == 5


def test_train_on_volumes_and_predict_a_volume(vols, tmp_path):
    run = train_tiny(vols, tmp_path / "runs", "data.layout=volumes")
    facts = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    assert facts.get("data", {}).get("layout", "volumes") == "volumes"
    src = vols / "images" / "case01.nii.gz"
    assert main(["predict", str(run), str(src), "--out", str(tmp_path / "pred")]) == 0
    out = nib.load(str(tmp_path / "pred" / "case01_mask.nii.gz"))
    assert out.shape == SHAPE
    np.testing.assert_allclose(out.affine, nib.load(str(src)).affine)
    assert set(np.unique(np.asarray(out.dataobj)).tolist()) <= {0, 1}
    # evaluation reports the per-volume 3-D Dice beside the per-slice numbers
    assert main(["evaluate", str(run), "--split", "all", "--no-plots"]) == 0
    summary = json.loads(next(run.rglob("summary.json")).read_text())
    assert summary["volumes"]["n"] == 5
    per_volume = next(run.rglob("per_volume.csv")).read_text().splitlines()
    assert per_volume[0].startswith("volume,file,n_slices,dice_3d") and len(per_volume) == 6


def test_bad_volume_is_exit_2_one_line(tmp_path, capsys):
    write_nifti(tmp_path / "images" / "case01.nii.gz", np.zeros(SHAPE, np.float32))
    write_nifti(tmp_path / "labels" / "case01.nii.gz", np.zeros((4, 4, 4), np.uint8))
    assert main(["slices", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "case01.nii.gz" in err and "differs from its image" in err
    assert not (tmp_path / "out").exists()
