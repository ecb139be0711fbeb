"""``RUN/model_summary.txt``: layers, trainable / frozen parameters after the strategy and
FLOPs at the training size."""

from __future__ import annotations

import json
import re

import pytest
import torch

from medtl.runs.folder import load_bundle, read_config
from medtl.runs.model_summary import SUMMARY_FILE, forward_flops, parameter_counts
from medtl.runtime.flops import count_flops
from tests.conftest import train_tiny


def _summary_numbers(run) -> dict[str, int]:
    text = (run / SUMMARY_FILE).read_text(encoding="utf-8")
    m = re.search(r"parameters: ([\d,]+) total, ([\d,]+) trainable, ([\d,]+) frozen", text)
    assert m, text
    total, trainable, frozen = (int(g.replace(",", "")) for g in m.groups())
    flops = re.search(r"FLOPs per image .*\(([\d,]+)\)", text)
    assert flops, text
    return {
        "total": total,
        "trainable": trainable,
        "frozen": frozen,
        "flops": int(flops.group(1).replace(",", "")),
        "text": text,
    }


@pytest.mark.parametrize("strategy", ["frozen", "finetune"])
def test_trainable_and_frozen_add_up_to_the_models_parameters(
    phantoms, tmp_path, strategy, request
):
    if strategy == "finetune":  # the default strategy: the session's tiny run, only read
        run = request.getfixturevalue("seg_run")
        assert read_config(run).model.strategy == strategy
    else:
        run = train_tiny(phantoms, tmp_path, f"model.strategy={strategy}")
    got = _summary_numbers(run)
    net, cfg, _ = load_bundle(run)
    total = sum(p.numel() for p in net.parameters())
    encoder = sum(p.numel() for p in net.encoder.parameters())
    assert got["trainable"] + got["frozen"] == got["total"] == total
    if strategy == "frozen":
        assert got["frozen"] == encoder and got["trainable"] == total - encoder > 0
    else:
        assert got["frozen"] == 0 and got["trainable"] == total
    # the FLOPs at the training size, from the one FLOP counter medtl bench uses
    size = cfg.data.image_size
    assert got["flops"] == int(count_flops(net.eval(), torch.zeros(1, 3, size, size)))
    assert f"input: 1 x 3 x {size} x {size}" in got["text"]
    assert "net.encoder" in got["text"] and "net.decoder" in got["text"]
    facts = json.loads((run / "run.json").read_text())["parameters"]
    assert {k: facts[k] for k in ("total", "trainable", "frozen")} == {
        k: got[k] for k in ("total", "trainable", "frozen")
    }


def test_counting_flops_leaves_the_modules_modes_and_statistics_alone():
    from medtl.models.build import build_model
    from medtl.models.strategy import apply_strategy

    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    apply_strategy(net, 0)  # frozen encoder: its BatchNorms in eval mode, the rest training
    modes = [m.training for m in net.modules()]
    stats = [b.clone() for b in net.buffers()]
    assert forward_flops(net, 32) > 0
    assert [m.training for m in net.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers(), strict=True))
    counts = parameter_counts(net)
    assert counts["frozen"] == sum(p.numel() for p in net.encoder.parameters())


def test_the_module_example_runs():
    import doctest

    from medtl.runs import model_summary

    result = doctest.testmod(model_summary)
    assert result.attempted > 0 and result.failed == 0
