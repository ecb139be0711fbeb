"""``medtl app`` leaves nothing in the temporary folder after it stops, and caps uploads."""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    find_spec("gradio") is None, reason="needs the [app] extra (gradio)"
)  # gradio is imported by the tests that run, not at collection


def _upload(phantoms: Path) -> Path:
    """A phantom image copied where Gradio keeps uploads (one folder per file)."""
    from gradio.utils import get_upload_folder

    src = sorted((phantoms / "benign").glob("benign_000[0-9].png"))[0]
    folder = Path(get_upload_folder()) / "medtl-test-upload"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / src.name))


def test_close_deletes_masks_and_uploads(seg_run, phantoms):
    from medtl.apps.gradio_app import build_app

    demo = build_app(seg_run)
    upload = _upload(phantoms)
    mask = demo.analyser(str(upload))[3]
    assert Path(mask).is_file() and upload.is_file()
    demo.close()
    assert not Path(mask).exists() and not demo.analyser.out.exists()
    assert not upload.exists() and not upload.parent.exists()


def test_files_from_elsewhere_are_kept(seg_run, phantoms, tmp_path):
    from medtl.apps.gradio_app import Analyser

    mine = Path(shutil.copy(sorted((phantoms / "benign").glob("*.png"))[0], tmp_path / "a.png"))
    analyse = Analyser(seg_run)
    analyse(str(mine))
    analyse.cleanup()
    assert mine.is_file() and not analyse.out.exists()


def test_upload_over_the_runs_pixel_cap_is_a_message(seg_run, phantoms, monkeypatch):
    from medtl.apps.gradio_app import Analyser

    analyse = Analyser(seg_run)
    monkeypatch.setattr(analyse.predictor.cfg.data, "max_pixels", 100)
    shown, _, _, _, message = analyse(str(sorted((phantoms / "benign").glob("*.png"))[0]))
    assert shown is None and "over the cap of 100 (data.max_pixels)" in message
    analyse.cleanup()
