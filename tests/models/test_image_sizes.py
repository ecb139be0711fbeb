"""Every decoder segments every image size it accepts; the others are refused before the run
folder exists with one line (exit 2); the plain U-Net (model.encoder=none) trains."""

from __future__ import annotations

import json

import pytest
import torch

from medtl.cli.parser import main
from medtl.models.build import ARCHS, SIZE_MULTIPLE, build_model, check_image_size
from medtl.utils.errors import ConfigError
from tests.conftest import train_tiny


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("size", [48, 64, 80])
def test_every_arch_takes_its_allowed_sizes_or_refuses_them(arch, size):
    if size % SIZE_MULTIPLE.get(arch, 16):
        with pytest.raises(ConfigError, match=f"model.arch={arch} needs data.image_size"):
            check_image_size("segmentation", arch, size)
        return
    check_image_size("segmentation", arch, size)
    torch.manual_seed(0)
    net, _ = build_model("segmentation", arch, "resnet18", "none")
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 3, size, size))["seg"].shape == (2, 1, size, size)


def test_classification_takes_any_allowed_size():
    check_image_size("classification", "unetplusplus", 48)


def test_refused_size_is_one_line_exit_2_and_no_run_folder(phantoms, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            f"data.root={phantoms}",
            f"output.dir={out}",
            "model.arch=unetplusplus",
            "data.image_size=48",
            "model.weights=none",
            "model.encoder=resnet18",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "model.arch=unetplusplus needs data.image_size to be a multiple of 32, got 48" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_plain_unet_without_a_backbone_trains(phantoms, tmp_path):
    run = train_tiny(phantoms, tmp_path, "model.encoder=none", "model.in_channels=1")
    facts = json.loads((run / "run.json").read_text())
    assert facts["status"] == "finished" and facts["model"]["encoder"] == "none"
    assert "no backbone" in facts["model"]["weights"]
