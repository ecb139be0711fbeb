"""The Python API: keyword settings, an in-memory predictor equal to ``medtl predict``, and
no process-wide state changed by importing medtl or calling it."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import medtl
from medtl import api
from medtl.configuration.loading import Config, load_config
from medtl.configuration.settings import config_from_settings
from medtl.utils.errors import ConfigError, DataError


def test_every_verb_in_all_is_callable_and_medtl_exposes_the_others():
    for name in api.__all__:
        assert callable(getattr(api, name)), name
    for name in medtl._API:
        assert getattr(medtl, name) is getattr(api, name), name
    assert medtl.api is api


def test_importing_medtl_is_cheap_and_changes_nothing():
    probe = (
        "import sys, warnings, logging\n"
        "filters = list(warnings.filters)\n"
        "import medtl\n"
        "medtl.load, medtl.train, medtl.configure_cpu\n"
        "assert warnings.filters == filters\n"
        "assert 'torch' not in sys.modules, 'importing medtl imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_settings_are_keywords_leaf_names_or_section_dicts(tmp_path):
    cfg = config_from_settings(
        data="phantoms", image_size=64, epochs=1, weights="none", train={"seed": 3}
    )
    assert cfg.data.root == "phantoms" and cfg.data.image_size == 64
    assert cfg.train.epochs == 1 and cfg.model.weights == "none" and cfg.train.seed == 3
    nested = config_from_settings(data={"root": "ph"}, model={"encoder": "resnet18"})
    assert nested.data.root == "ph" and nested.model.encoder == "resnet18"
    with pytest.raises(ConfigError, match="data=.*train="):
        config_from_settings(seed=1)  # data.seed and train.seed
    with pytest.raises(ConfigError, match="epochs"):
        config_from_settings(epoch=1)
    with pytest.raises(ConfigError, match="multiple of 16"):
        config_from_settings(image_size=50)
    base = load_config(overrides=["train.epochs=7"])
    derived = config_from_settings(base, lr=0.01)
    assert derived.train.epochs == 7 and derived.train.lr == 0.01 and base.train.lr == 1e-3
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 4}}))
    assert config_from_settings(path, batch_size=2).train.epochs == 4
    assert isinstance(api.config(["train.epochs=2"], epochs=3), Config)
    assert api.config(["train.epochs=2"], epochs=3).train.epochs == 3


def _state() -> tuple:
    return list(warnings.filters), torch.get_num_threads(), torch.get_rng_state()


def test_api_train_takes_keywords_and_leaves_the_process_as_it_was(phantoms, seg_run, tmp_path):
    # seg_run: one training has run, so the libraries' own import-time warning filters
    # (Lightning, SciPy, ...) are in place before the state is taken
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    before = _state()
    try:
        run = _train_through_api(phantoms, tmp_path)
    finally:  # this worker's later tests (some fork) run with its own thread count again
        after = _state()
        torch.set_num_threads(threads)
    assert after[:2] == before[:2] and torch.equal(after[2], before[2])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["model"]["encoder"] == "resnet18"
    assert saved["train"]["threads"] == 1 and (run / "model.pt").is_file()


def _train_through_api(phantoms, tmp_path):
    return api.train(
        data=phantoms,
        output={"dir": str(tmp_path), "name": "api"},
        image_size=32,
        epochs=1,
        batch_size=4,
        weights="none",
        encoder="resnet18",
        augment="none",
        patience=0,
        threads=1,
        memory_format="contiguous",
        progress=False,
    )


@pytest.mark.parametrize("fixture", ["seg_run", "mt_run"])
def test_predictor_in_memory_equals_medtl_predict(fixture, request, tmp_path):
    from medtl.inference.predictor import predict

    run = request.getfixturevalue(fixture)
    rng = np.random.default_rng(1)
    grey = (rng.random((50, 70)) * 255).astype(np.uint8)
    path = tmp_path / "scan.png"
    Image.fromarray(grey).save(path)
    predict(run, [path], tmp_path / "out", batch_size=1)
    row = next(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))

    before = _state()[:2]
    predictor = medtl.load(run)
    results = [predictor.predict(x) for x in (grey, np.stack([grey] * 3, -1), Image.open(path))]
    assert _state()[:2] == before
    assert not (tmp_path / "predictions.csv").exists()
    for result in results:
        if "lesion_pixels" in row:
            written = np.array(Image.open(tmp_path / "out" / "scan_mask.png")) > 0
            assert result.mask.shape == (50, 70) and result.mask.dtype == bool
            assert np.array_equal(result.mask, written)
        else:
            assert result.mask is None
        if "label" in row:
            assert result.label == row["label"]
            for c, p in result.probabilities.items():
                assert p == pytest.approx(float(row[f"p_{c}"]), abs=1e-6)
        else:
            assert result.label is None and result.probabilities is None


def test_predictor_reads_arrays_by_the_file_rule():
    from medtl.inference.predictor import as_rgb_uint8

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    assert as_rgb_uint8(rgba).shape == (4, 5, 3) and as_rgb_uint8(rgba)[0, 0, 0] == 200
    floats = np.linspace(0.0, 1.0, 20, dtype=np.float32).reshape(4, 5)
    out = as_rgb_uint8(floats)
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert as_rgb_uint8(Image.new("P", (5, 4))).shape == (4, 5, 3)
    with pytest.raises(DataError, match="shape"):
        as_rgb_uint8(np.zeros((2, 2, 2, 2)))
