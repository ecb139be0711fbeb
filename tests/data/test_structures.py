"""The ``structures`` layout (one binary mask per structure, overlapping) and the mask scheme
``multilabel``: detection in both forms, the bit-packed masks, the audit, bad input."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medtl.data.audit.report import audit
from medtl.data.layouts import discover
from medtl.data.masks.scan import resolve
from medtl.data.readers.io import read_mask
from medtl.utils.errors import DataError
from tests.conftest import run_cli
from tests.data.structures import STRUCTURES, chest, make_structures


def _cfg(mode: str = "auto") -> SimpleNamespace:
    return SimpleNamespace(mask_mode=mode, labels=None, mask_colors=None)


@pytest.mark.parametrize("flat", [False, True])
def test_both_forms_found_in_structure_order(tmp_path, flat):
    root = make_structures(tmp_path / "d", n=3, flat=flat)
    ds = discover(root)
    assert ds.layout == "structures" and len(ds.samples) == 3 and not ds.problems
    s = ds.samples[0]
    assert s.meta["structures"] == STRUCTURES
    # the k-th mask is the k-th structure's, in either form
    assert [m.parent.name if not flat else m.stem[4:] for m in s.masks] == list(STRUCTURES)


def test_overlaps_kept_as_bits_and_the_decision_said(tmp_path):
    root = make_structures(tmp_path / "d", n=6)
    ds = discover(root)
    scheme = resolve(_cfg(), ds.samples, root)
    assert scheme.multilabel and scheme.channels == 5 and scheme.names == STRUCTURES
    assert "overlap" in scheme.describe() and scheme.describe().startswith("multilabel: heart")
    bits = read_mask(ds.samples[0].masks, (32, 32), scheme)
    _, truth = chest(0)
    for k, name in enumerate(STRUCTURES, 1):
        np.testing.assert_array_equal(scheme.structure(bits, k), truth[name])
    overlap = truth["left_clavicle"] & truth["left_lung"]
    assert overlap.any() and (bits[overlap] & 0b110 == 0b110).all()  # both bits set
    shown = scheme.shown(bits)  # overlays: each pixel's first structure, legend colours
    assert (shown[overlap] == 2).all() and (shown[truth["right_lung"] & ~truth["heart"]] >= 4).all()
    assert (shown == 0).sum() == (bits == 0).sum()
    assert scheme.config_values()["mask_mode"] == "multilabel"
    # the audit says which mode and why, and lists no "merged by union" images
    report = audit(root)
    assert report.mask_interpretation["mode"] == "multilabel" and not report.multi_mask
    assert "one sigmoid channel each" in report.format()
    # no problem: 32 px pictures of one template with their own noise are no duplicates
    assert report.problems == [] and report.near_duplicates == [], report.problems
    table = {r["name"]: r for r in report.label_table}
    assert all(table[n]["n_images"] == 6 for n in STRUCTURES)
    share = np.mean([chest(i)[1]["left_lung"].mean() for i in range(6)])
    assert table["left_lung"]["pixel_share"] == pytest.approx(share)  # of all pixels


def test_mode_choices(tmp_path):
    root = make_structures(tmp_path / "d", n=2)
    ds = discover(root)
    union = read_mask(ds.samples[0].masks, (32, 32), resolve(_cfg("binary"), ds.samples, root))
    assert union.dtype == bool  # binary: the union of the structures, as asked
    with pytest.raises(DataError, match="set data.mask_mode=multilabel"):
        resolve(_cfg("labels"), ds.samples, root)
    plain = tmp_path / "p"
    for d in ("images", "masks"):
        (plain / d).mkdir(parents=True)
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(plain / d / "a.png")
    with pytest.raises(DataError, match="one mask folder per structure"):
        resolve(_cfg("multilabel"), discover(plain).samples, plain)


def _train(capsys, root: Path, out: Path) -> tuple[int, str]:
    code, _, err = run_cli(
        capsys, "train", f"data.root={root}", f"output.dir={out}", "data.image_size=32",
        "train.epochs=1", "model.weights=none", "model.encoder=resnet18", "train.threads=1",
    )  # fmt: skip
    return code, err


def test_missing_structure_mask_and_size_mismatch_stop_with_one_line(tmp_path, capsys):
    root = make_structures(tmp_path / "d", n=6)
    gone = root / "masks" / "left_lung" / "x03.png"
    gone.unlink()
    code, err = _train(capsys, root, tmp_path / "runs")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert str(root / "images" / "x03.png") in line and "'left_lung'" in line, line
    make_structures(root, n=6)  # whole again
    small = root / "masks" / "heart" / "x02.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small)
    code, err = _train(capsys, root, tmp_path / "runs")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert str(small) in line and "16x16 differs" in line, line


def test_a_runs_scheme_is_checked_against_the_structure_folders(tmp_path):
    """Data read with a trained run's multilabel scheme (no mask scan) must have the run's
    structures, in order: bit k is the k-th structure's mask."""
    from medtl.configuration.loading import load_config
    from medtl.data.masks.scheme import MaskScheme
    from medtl.data.pipeline import load_samples

    root = make_structures(tmp_path / "d", n=3)
    cfg = load_config(overrides=[f"data.root={root}", "data.group_duplicates=false"])
    values = tuple(range(1, len(STRUCTURES) + 1))
    same = MaskScheme("multilabel", values, STRUCTURES)
    assert load_samples(cfg, scheme=same).mask_scheme is same
    other = MaskScheme("multilabel", values, tuple(reversed(STRUCTURES)))
    with pytest.raises(DataError, match=r"structures heart.* differ from the run's"):
        load_samples(cfg, scheme=other)
