"""``data.image_size`` beyond the pixel cap or the machine's memory: one line, exit 2."""

from __future__ import annotations

import pytest

from medtl.configuration import limits
from medtl.configuration.loading import load_config
from medtl.utils.errors import ConfigError
from tests.conftest import run_cli


def test_pixel_cap_refuses_a_huge_image_size():
    with pytest.raises(
        ConfigError,
        match=r"data.image_size=100000: .* over data.max_pixels \(150,000,000\); use data.image_size <= 12240",
    ):
        load_config(overrides=["data.image_size=100000"])
    load_config(overrides=["data.image_size=12240"])  # 149.8 M pixels: allowed
    with pytest.raises(ConfigError, match="data.image_size <= 992"):
        load_config(overrides=["data.image_size=1024", "data.max_pixels=1000000"])


@pytest.mark.parametrize(
    "task,size,batch,memory,ok",
    [
        ("segmentation", 8192, 8, 128 * 2**30, False),  # 512 GB needed
        ("segmentation", 8192, 1, 128 * 2**30, True),  # 64 GB
        ("segmentation", 512, 16, 8 * 2**30, True),  # 4 GB
        ("segmentation", 2048, 8, 16 * 2**30, False),  # 32 GB
        ("classification", 2048, 8, 16 * 2**30, True),  # 8 GB
    ],
)
def test_training_memory_floor(task, size, batch, memory, ok):
    cfg = load_config(
        overrides=[f"task={task}", f"data.image_size={size}", f"train.batch_size={batch}"]
    )
    if ok:
        limits.check_training_memory(cfg, memory)
    else:
        with pytest.raises(
            ConfigError, match=f"data.image_size={size} with train.batch_size={batch}"
        ):
            limits.check_training_memory(cfg, memory)


def test_suggested_size_fits():
    cfg = load_config(overrides=["data.image_size=8192"])
    with pytest.raises(ConfigError) as info:
        limits.check_training_memory(cfg, 24 * 2**30)
    largest = int(str(info.value).split("data.image_size <= ")[1].split()[0])
    cfg.data.image_size = largest
    limits.check_training_memory(cfg, 24 * 2**30)
    assert largest % 16 == 0 and largest >= 1024


@pytest.mark.parametrize("size", ["8192", "100000"])
def test_train_cli_exits_2_with_one_line(phantoms, tmp_path, capsys, monkeypatch, size):
    monkeypatch.setattr(limits, "total_memory", lambda: 16 * 2**30)
    code, out, err = run_cli(
        capsys,
        "train",
        "--no-progress",
        f"data.root={phantoms}",
        f"output.dir={tmp_path}",
        f"data.image_size={size}",
        "model.weights=none",
        "train.threads=1",
    )
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and f"data.image_size={size}" in lines[0], err
    assert not any(tmp_path.iterdir())  # no run folder
