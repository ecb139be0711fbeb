"""Decompression bombs are refused from their headers, under a 2 GB memory limit.

Each bomb is read in a child process whose address space is capped with
``resource.setrlimit(RLIMIT_AS)``; the child reports the error and its peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medtl.data.readers import caps
from medtl.data.readers.io import pixel_cap, read_image
from medtl.utils.errors import DataError
from tests.data import bombs

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")

LIMIT = 2 * 2**30
CAP = f"{caps.MAX_PIXELS:,}"

_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from medtl.data.readers.io import pixel_cap, read_image, read_mask
kind, path, cap = sys.argv[1], sys.argv[2], int(sys.argv[4])
error = None
try:
    with pixel_cap(cap or None):
        out = read_mask([path]) if kind == "mask" else read_image(path)
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
# peak RSS of this process image: VmHWM (ru_maxrss survives execve and would report the
# parent's peak when the parent is a large test worker)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"error": error, "rss": rss}))
"""


def read_limited(path: Path, kind: str = "image", cap: int = 0) -> dict:
    """Read ``path`` in a child limited to 2 GB of address space: ``{"error", "rss"}``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(path), str(LIMIT), str(cap)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bomb_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bombs")


def _refused(path: Path, result: dict, what: str = "pixels") -> None:
    error = result["error"]
    assert error is not None and error.startswith("DataError: "), error
    assert str(path) in error and CAP in error and "data.max_pixels" in error, error
    assert what in error and "\n" not in error, error
    assert result["rss"] < 2 * 2**30, result


MAKERS = {
    "png": lambda d: bombs.png_bomb(d / "zeros.png"),
    "jpeg": lambda d: bombs.jpeg_bomb(d / "big.jpg"),
    "bmp": lambda d: bombs.bmp_bomb(d / "big.bmp"),
    "gif": lambda d: bombs.gif_bomb(d / "big_mask.gif"),
    "tiff_page2": lambda d: bombs.tiff_bomb(d / "pages.tif"),
    "dicom_deflate": lambda d: bombs.deflate_dicom(d / "deflate.dcm", 16384, 16384),
}


@pytest.mark.parametrize("kind", ["image", "mask"])
@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_image_bombs_refused_from_header(bomb_dir, fmt, kind):
    path = bomb_dir / f"{fmt}"
    path.mkdir(exist_ok=True)
    files = list(path.iterdir())
    bomb = files[0] if files else MAKERS[fmt](path)
    assert bomb.stat().st_size < 2_000_000  # small on disk
    result = read_limited(bomb, kind)
    _refused(bomb, result)
    assert result["rss"] < 400 * 2**20  # nothing decoded


def test_png_bomb_is_real(bomb_dir):
    """A 12000^2 PNG decodes to 432 MB (RGB) under the cap and is refused under a lower
    one: the header check is what saves the memory."""
    bomb = bombs.png_bomb(bomb_dir / "real.png", side=12000)
    refused = read_limited(bomb, cap=100_000_000)
    assert "over the cap of 100,000,000" in refused["error"]
    decoded = read_limited(bomb)
    assert decoded["error"] is None, decoded
    assert decoded["rss"] > refused["rss"] + 300 * 2**20  # 12000^2 x 3 bytes at least


def test_dicom_deflate_lying_about_size_refused(bomb_dir):
    """A 64x64 header over 160 MB of deflated zeros: refused while inflating, bounded."""
    bomb = bombs.deflate_dicom(bomb_dir / "liar.dcm", 64, 64, pixel_bytes=160 * 2**20)
    assert bomb.stat().st_size < 1_000_000
    result = read_limited(bomb)
    assert "inflates to more than" in result["error"] and str(bomb) in result["error"]
    assert result["rss"] < 400 * 2**20


def test_dicom_deflate_within_cap_decodes(tmp_path):
    path = bombs.deflate_dicom(tmp_path / "ok.dcm", 32, 48)
    out = read_image(path)
    assert out.shape == (32, 48, 3) and int(out.max()) == int(out.min())  # all zeros


def test_dicom_frames_count_toward_cap(tmp_path):
    """Rows x Columns x NumberOfFrames: 3 frames of 40x40 are 4800 pixels."""
    ds = _frames_dicom(tmp_path / "frames.dcm", frames=3)
    from medtl.data.readers.dicom import modality_values

    with pixel_cap(4800):
        assert modality_values(ds, 1).shape == (40, 40)
    with pixel_cap(4799), pytest.raises(DataError, match="40x40x3 = 4,800 pixels"):
        modality_values(ds, 1)


def _frames_dicom(path: Path, frames: int) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, "1.2.3"
    ds.Rows = ds.Columns = 40
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((frames, 40, 40), np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "name,shape,data",
    [
        ("huge_header.nii.gz", (32767, 32767, 32767), 0),
        ("huge_header.nii", (32767, 32767, 32767), 0),
        ("zeros.nii.gz", (1024, 1024, 160), None),
    ],
)
@pytest.mark.parametrize("kind", ["slice", "mask"])
def test_nifti_bombs_refused_from_header(bomb_dir, name, shape, data, kind):
    folder = bomb_dir / "nifti"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if not path.exists():
        bombs.nifti_bomb(path, shape, data)
    assert path.stat().st_size < 2_000_000
    ref = f"{path}@z0001.{kind}"
    result = read_limited(Path(ref), "mask" if kind == "mask" else "image")
    _refused(path, result, "voxels")
    assert "x".join(map(str, shape)) in result["error"]


def test_slices_command_refuses_bomb_volume(tmp_path):
    from medtl import api

    (tmp_path / "vols" / "images").mkdir(parents=True)
    bombs.nifti_bomb(tmp_path / "vols" / "images" / "a.nii.gz", (32767, 32767, 32767), 0)
    with pytest.raises(DataError, match=r"a\.nii\.gz: 32767x32767x32767 = .* voxels, over the cap"):
        api.slices(tmp_path / "vols", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cap_follows_the_block(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    with pixel_cap(600):
        assert read_image(path).shape == (20, 30, 3)
    with pixel_cap(599), pytest.raises(DataError, match="30x20 = 600 pixels, over the cap of 599"):
        read_image(path)
    assert caps.current_cap() == caps.MAX_PIXELS


def test_audit_reports_bomb_as_unreadable(tmp_path):
    from medtl.data.audit.report import audit

    folder = tmp_path / "data"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    from PIL import Image

    for k in range(3):
        Image.fromarray(np.full((16, 16), 40 * k, np.uint8)).save(folder / "a" / f"{k}.png")
        Image.fromarray(np.full((16, 16), 50 * k, np.uint8)).save(folder / "b" / f"{k}.png")
    bomb = bombs.jpeg_bomb(folder / "b" / "bomb.jpg")
    report = audit(folder)
    errors = [u["error"] for u in report.unreadable]
    assert any(str(bomb) in e or "bomb.jpg" in e for e in errors), errors
    assert any("over the cap" in e for e in errors), errors
