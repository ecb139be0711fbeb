"""Volume slices are views of the loaded volume, equal to the copies np.take made."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.data.readers import volumes
from medtl.utils.errors import DataError

nib = pytest.importorskip("nibabel")


@pytest.fixture
def volume(tmp_path):
    data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.7, 2.0, 1.0])), str(path))
    return path, data


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_take_slice_is_a_view_equal_to_take(volume, axis):
    path, data = volume
    loaded = volumes.load_volume(path)[0]
    for k in range(loaded.shape[axis]):
        view = volumes.take_slice(loaded, axis, k)
        assert np.shares_memory(view, loaded) and view.base is not None
        assert np.array_equal(view, np.take(loaded, k, axis=axis))
        assert np.array_equal(view, np.take(data, k, axis=axis).astype(np.float32))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_readers_match_the_copying_ones(volume, axis):
    path, data = volume
    f = data.astype(np.float32)
    lo, hi = np.percentile(f, [volumes.LOW_PERCENTILE, volumes.HIGH_PERCENTILE])
    for k in range(data.shape[axis]):
        expected = volumes.scale_range(np.take(f, k, axis=axis).astype(np.float64), lo, hi)
        assert np.array_equal(volumes.slice_uint8(path, axis, k), expected)
        labels = np.clip(np.rint(np.take(f, k, axis=axis)), 0, 65535).astype(np.uint8)
        assert np.array_equal(volumes.slice_mask(path, axis, k), labels)


def test_out_of_range_mask_slice_is_one_line(volume):
    path, _ = volume
    with pytest.raises(DataError, match="slice 9 out of range along axis 0"):
        volumes.slice_mask(path, 0, 9)
    with pytest.raises(DataError, match="slice -1 out of range"):
        volumes.slice_uint8(path, 2, -1)
