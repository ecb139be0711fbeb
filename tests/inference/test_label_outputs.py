"""Predicted masks keep the input's own encoding: palette masks come back
as mode-P PNGs with the training masks' palette, colour masks as RGB with the data set's
colours, label maps with their own (non-contiguous) values, binary masks as 0/255 grey,
each at its image's original size, from ``medtl evaluate`` and ``medtl predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import train_tiny

#: a palette that is not the grey ramp: index 1 dark red, 2 teal, the rest a ramp
PALETTE = [0, 0, 0, 140, 20, 20, 0, 128, 128] + [v for i in range(3, 256) for v in (i, i, i)]
COLOURS = {1: (255, 0, 0), 2: (0, 255, 0)}
#: two images at another size than the others (original size is kept on output)
ODD = {"phantom_0002.png": (40, 48), "phantom_0005.png": (36, 30)}


def _label_data(root: Path, encode) -> Path:
    """12 label phantoms (0 background, 1 lesion, 2 ring), masks re-saved by ``encode``."""
    from medtl.data.phantoms import make_label_phantoms

    make_label_phantoms(root, n=12, size=32, seed=0, labels=2)
    (root / "labels.yaml").unlink()  # the names come from the encoding under test
    for mask_path in sorted((root / "masks").glob("*.png")):
        image_path = root / "images" / mask_path.name
        m = np.asarray(Image.open(mask_path))
        if mask_path.name in ODD:  # (height, width)
            h, w = ODD[mask_path.name]
            m = np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))
            Image.open(image_path).resize((w, h)).save(image_path)
        encode(m).save(mask_path)
    return root


def _palette_png(m: np.ndarray) -> Image.Image:
    img = Image.fromarray(m)
    img.putpalette(PALETTE)
    return img


def _colour_png(m: np.ndarray) -> Image.Image:
    rgb = np.zeros((*m.shape, 3), np.uint8)
    for k, c in COLOURS.items():
        rgb[m == k] = c
    return Image.fromarray(rgb)


def _spread_png(m: np.ndarray) -> Image.Image:
    return Image.fromarray(np.array([0, 128, 255], np.uint8)[m])  # non-contiguous values


@pytest.fixture(scope="module")
def palette_run(tmp_path_factory) -> Path:
    root = _label_data(tmp_path_factory.mktemp("pal") / "d", _palette_png)
    return train_tiny(root, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> Path:
    root = _label_data(tmp_path_factory.mktemp("rgb") / "d", _colour_png)
    return train_tiny(root, tmp_path_factory.mktemp("runs"))


def _sizes(run: Path) -> dict[str, tuple[int, int]]:
    """``{image stem: (width, height)}`` of the run's data set."""
    root = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["root"])
    return {p.stem: Image.open(p).size for p in (root / "images").glob("*.png")}


def _predicted(run: Path, out: Path) -> list[Path]:
    from medtl.inference.predictor import predict

    root = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["root"])
    images = [root / "images" / n for n in ("phantom_0001.png", *ODD)]
    predict(run, images, out)
    return [out / f"{p.stem}_mask.png" for p in images]


def test_palette_masks_written_with_the_palette(palette_run, tmp_path):
    from medtl import api

    data = yaml.safe_load((palette_run / "config.yaml").read_text())["data"]
    assert data["mask_mode"] == "palette" and data["labels"] == "1:label_1,2:label_2"
    assert data["mask_palette"] == bytes(PALETTE).hex()  # the run keeps it for predict
    s = api.evaluate(palette_run, plots=False, save_images=0)
    written = sorted((Path(s["out_dir"]) / "predictions").glob("*_pred.png"))
    sizes = _sizes(palette_run)
    assert len(written) == s["n_images"] >= 2
    for path in [*written, *_predicted(palette_run, tmp_path / "pred")]:
        img = Image.open(path)
        assert img.mode == "P" and img.getpalette() == PALETTE, path
        assert set(np.unique(np.asarray(img)).tolist()) <= {0, 1, 2}
        assert img.size == sizes[path.name.rsplit("_", 1)[0]]


def test_colour_masks_written_with_the_colours(colour_run, tmp_path):
    from medtl import api

    data = yaml.safe_load((colour_run / "config.yaml").read_text())["data"]
    assert data["mask_mode"] == "colors" and data["mask_palette"] is None
    s = api.evaluate(colour_run, plots=False, save_images=0)
    written = sorted((Path(s["out_dir"]) / "predictions").glob("*_pred.png"))
    sizes = _sizes(colour_run)
    for path in [*written, *_predicted(colour_run, tmp_path / "pred")]:
        img = Image.open(path)
        assert img.mode == "RGB" and img.size == sizes[path.name.rsplit("_", 1)[0]], path
        colours = {tuple(c) for c in np.asarray(img).reshape(-1, 3).tolist()}
        assert colours <= {(0, 0, 0), *COLOURS.values()}


def test_onnx_predict_writes_the_palette_like_pytorch(palette_run, tmp_path):
    """``predict --onnx`` shares the mask writer: same palette, same pixels as PyTorch."""
    pytest.importorskip("onnxruntime")
    from medtl.exporting import export_onnx, predict_onnx

    export_onnx(palette_run, out=tmp_path / "export")
    root = Path(yaml.safe_load((palette_run / "config.yaml").read_text())["data"]["root"])
    images = [root / "images" / n for n in ("phantom_0001.png", *ODD)]
    predict_onnx(palette_run, images, tmp_path / "onnx", model=tmp_path / "export" / "model.onnx")
    for eager in _predicted(palette_run, tmp_path / "eager"):
        onnx = Image.open(tmp_path / "onnx" / eager.name)
        assert onnx.mode == "P" and onnx.getpalette() == PALETTE, eager.name
        same = np.asarray(onnx) == np.asarray(Image.open(eager))
        assert same.mean() >= 0.998, eager.name  # float32 ties at the argmax only


def test_app_mask_file_keeps_the_palette(palette_run):
    """The browser app's downloadable mask is written by the same writer."""
    pytest.importorskip("gradio")
    from medtl.apps.gradio_app import Analyser

    root = Path(yaml.safe_load((palette_run / "config.yaml").read_text())["data"]["root"])
    *_, mask, message = Analyser(palette_run)(str(root / "images" / "phantom_0001.png"))
    img = Image.open(mask)
    assert img.mode == "P" and img.getpalette() == PALETTE
    assert f"lesion pixels: {int(np.count_nonzero(np.asarray(img)))}" in message


def test_non_contiguous_label_values_written_back(tmp_path):
    root = _label_data(tmp_path / "d", _spread_png)
    run = train_tiny(root, tmp_path / "runs")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["labels"] == (
        "128:label_128,255:label_255"
    )
    for path in _predicted(run, tmp_path / "pred"):
        img = Image.open(path)
        assert img.mode == "L" and set(np.unique(np.asarray(img)).tolist()) <= {0, 128, 255}
    assert "lesion_pixels" in (tmp_path / "pred" / "predictions.csv").read_text()


def test_binary_masks_still_0_255_grey(seg_run, tmp_path):
    for path in _predicted_binary(seg_run, tmp_path / "pred"):
        img = Image.open(path)
        assert img.mode == "L" and set(np.unique(np.asarray(img)).tolist()) <= {0, 255}


def _predicted_binary(run: Path, out: Path) -> list[Path]:
    from medtl.inference.predictor import predict

    root = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["root"])
    images = sorted(root.rglob("*.png"))
    images = [p for p in images if not p.stem.endswith("_mask")][:3]
    predict(run, images, out)
    return [out / f"{p.stem}_mask.png" for p in images]


def test_save_mask_encodings(tmp_path):
    """The one writer, without training: every encoding from one index map."""
    from medtl.data.masks.scheme import MaskScheme
    from medtl.inference.engine import save_mask

    idx = np.array([[0, 1], [2, 1]], np.uint8)
    cases = {
        "labels": (MaskScheme("labels", (128, 255), ("a", "b")), "L", [[0, 128], [255, 128]]),
        "wide": (MaskScheme("labels", (1000, 2000), ("a", "b")), "I;16", [[0, 1000], [2000, 1000]]),
        "palette": (MaskScheme("palette", (1, 2), ("a", "b"), palette=tuple(PALETTE)), "P", None),
        "colors": (MaskScheme("colors", ((255, 0, 0), (0, 255, 0)), ("a", "b")), "RGB", None),
    }
    for name, (scheme, mode, values) in cases.items():
        save_mask(tmp_path / f"{name}.png", idx, scheme)
        img = Image.open(tmp_path / f"{name}.png")
        assert img.mode == mode, name
        if values is not None:
            assert np.asarray(img).tolist() == values
    assert Image.open(tmp_path / "palette.png").getpalette() == PALETTE
    assert np.asarray(Image.open(tmp_path / "palette.png")).tolist() == idx.tolist()
    assert np.asarray(Image.open(tmp_path / "colors.png"))[1, 0].tolist() == [0, 255, 0]
    save_mask(tmp_path / "bin.png", idx > 0, MaskScheme("binary"))
    img = Image.open(tmp_path / "bin.png")
    assert img.mode == "L" and np.asarray(img).tolist() == [[0, 255], [255, 255]]


def _fake_run(tmp_path: Path, *overrides: str) -> Path:
    """A run folder with only config.yaml (what the report reads the mask scheme from)."""
    from medtl.configuration.loading import dump_config, load_config

    run = tmp_path / "run"
    (run / "eval" / "val" / "predictions").mkdir(parents=True)
    cfg = load_config(overrides=[f"data.root={tmp_path}", *overrides])
    (run / "config.yaml").write_text(dump_config(cfg))
    return run / "eval" / "val"


def test_report_case_colours_each_saved_label(tmp_path):
    """The report composes a case from a saved label map (values 128/255, no overlay saved):
    both labels in their overlay colours, not thresholded away."""
    from medtl.inference.engine import label_colour, overlay
    from medtl.reporting.cases import case_image, overlay_grid_png

    split_dir = _fake_run(tmp_path, "data.mask_mode=labels", "data.labels=128:a,255:b")
    image = np.full((24, 24), 100, np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    stored = np.zeros((24, 24), np.uint8)
    stored[2:10, 2:10], stored[12:20, 12:20] = 128, 255
    Image.fromarray(stored).save(split_dir / "predictions" / "x_pred.png")
    row = {"image": str(tmp_path / "x.png"), "class": "", "dice": "0.5"}
    got = case_image(row, split_dir)
    idx = (stored == 128) * 1 + (stored == 255) * 2
    assert (got == overlay(np.repeat(image[..., None], 3, 2), idx.astype(np.uint8), None)).all()
    for k, (y, x) in ((1, (5, 5)), (2, (15, 15))):
        want = np.round(0.55 * 100 + 0.45 * label_colour(k)).astype(int)
        assert np.abs(got[y, x].astype(int) - want).max() <= 1, k
    assert (got[0, 0] == 100).all()  # background untouched
    assert overlay_grid_png([row], [split_dir], "cases") is not None


def test_report_case_reads_palette_and_binary_masks(tmp_path):
    from medtl.inference.engine import label_colour
    from medtl.reporting.cases import case_image

    image = np.full((16, 16), 50, np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    row = {"image": str(tmp_path / "x.png"), "class": ""}
    idx = np.zeros((16, 16), np.uint8)
    idx[:8], idx[8:12] = 1, 2
    split_dir = _fake_run(tmp_path, "data.mask_mode=palette", "data.labels=1:a,2:b")
    _palette_png(idx).save(split_dir / "predictions" / "x_pred.png")
    got = case_image(row, split_dir)
    assert got[0, 0].tolist() != got[9, 0].tolist() != got[15, 0].tolist()
    assert np.abs(got[9, 0] - (0.55 * 50 + 0.45 * label_colour(2))).max() <= 1
    binary = tmp_path / "b"
    split_dir = _fake_run(binary, "data.mask_mode=binary")
    Image.fromarray((idx > 0).astype(np.uint8) * 255).save(split_dir / "predictions" / "x_pred.png")
    got = case_image(row, split_dir)
    assert np.abs(got[0, 0] - (0.55 * 50 + 0.45 * label_colour(1))).max() <= 1  # red
    assert (got[15, 0] == 50).all()
