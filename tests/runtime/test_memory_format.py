"""train.memory_format: the layout probe changes nothing but the layout; both layouts train alike."""

from __future__ import annotations

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.data.pipeline import make_loader, prepare
from medtl.models.build import build_model
from medtl.runtime.memory_format import probe_layouts
from medtl.training.task import MedtlTask
from tests.conftest import train_tiny


def _task_and_data(phantoms):
    cfg = load_config(
        overrides=[f"data.root={phantoms}", "data.image_size=32", "model.weights=none"]
    )
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    task = MedtlTask(net, cfg)
    task.eval()
    return task, net, cfg, prepare(cfg)


def test_probe_runs_on_half_the_batch_and_leaves_weights_statistics_and_grads_untouched(
    phantoms,
):
    task, net, cfg, data = _task_and_data(phantoms)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = next(iter(make_loader(data, [0, 1, 2, 3], cfg, train=True)))
    seen = []
    forward = task.forward
    task.forward = lambda x: seen.append(x.shape[0]) or forward(x)
    best, speeds = probe_layouts(task, batch)
    assert seen == [2, 2, 2, 2]  # 1 warm + 1 timed step per layout, on half the batch
    assert set(speeds) == {"contiguous", "channels_last"} and all(v > 0 for v in speeds.values())
    assert best == max(speeds, key=speeds.get) and task.memory_format == best
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.grad is None for p in net.parameters())
    assert not net.training  # the mode it had
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    fmt = torch.channels_last if best == "channels_last" else torch.contiguous_format
    assert conv.weight.is_contiguous(memory_format=fmt)


def test_both_layouts_compute_the_same_loss_and_training_uses_the_choice(phantoms, tmp_path):
    from medtl.runtime.memory_format import set_layout

    task, _, cfg, data = _task_and_data(phantoms)
    x, y, label, _ = next(iter(make_loader(data, [0, 1, 2, 3], cfg, train=False)))
    losses = {}
    for layout in ("contiguous", "channels_last"):
        set_layout(task, layout)
        losses[layout] = task.compute_loss(task(x), y, label)["loss"].item()
    assert losses["channels_last"] == pytest.approx(losses["contiguous"], rel=1e-5)

    run = train_tiny(phantoms, tmp_path, "train.memory_format=auto")
    log = (run / "train.log").read_text()
    assert "memory format: " in log and "contiguous" in log and "channels_last" in log


def test_a_given_layout_is_set_and_logged_without_a_probe(phantoms, caplog):
    from medtl.runtime.memory_format import choose_layout

    task, net, cfg, _ = _task_and_data(phantoms)
    cfg.train.memory_format = "channels_last"  # as a plan writes it
    with caplog.at_level("INFO", logger="medtl"):
        layout, speeds = choose_layout(cfg, task, loader=None)  # no batch is read
    assert (layout, speeds, task.memory_format) == ("channels_last", None, "channels_last")
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert "memory format: channels_last (train.memory_format=channels_last)" in caplog.text
