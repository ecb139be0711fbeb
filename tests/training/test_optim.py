"""Optimiser and schedule keys reach torch: momentum, weight decay, min_lr, plateau factor and
patience, and the two_stage lr drop at the unfreeze epoch (model.unfreeze_lr_mult)."""

from __future__ import annotations

import csv

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.models.build import build_model
from medtl.training.task import MedtlTask
from tests.conftest import train_tiny


def _configured(*overrides: str):
    cfg = load_config(overrides=["model.weights=none", "model.encoder=resnet18", *overrides])
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    return MedtlTask(net, cfg).configure_optimizers()


def test_defaults_keep_the_former_numbers():
    cfg = load_config()
    t = cfg.train
    assert (t.momentum, t.weight_decay, t.min_lr) == (0.9, 1e-4, 0.0)
    assert (t.plateau_factor, t.plateau_patience, t.patience) == (0.5, 3, 0)
    assert (cfg.model.normalize, cfg.model.unfreeze_lr_mult) == ("auto", 1.0)


def test_plateau_factor_patience_and_floor_are_config_keys():
    out = _configured(
        "train.scheduler=plateau",
        "train.plateau_factor=0.1",
        "train.plateau_patience=5",
        "train.min_lr=1e-6",
    )
    sched = out["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (sched.factor, sched.patience, sched.min_lrs[0]) == (0.1, 5, 1e-6)
    assert out["lr_scheduler"]["monitor"] == "val_loss"


def test_cosine_anneals_to_min_lr():
    sched = _configured("train.min_lr=1e-5", "train.epochs=7")["lr_scheduler"]["scheduler"]
    assert (sched.eta_min, sched.T_max) == (1e-5, 7)


@pytest.mark.parametrize(
    "name, momentum, cls", [("rmsprop", 0.0, torch.optim.RMSprop), ("sgd", 0.5, torch.optim.SGD)]
)
def test_momentum_and_weight_decay(name, momentum, cls):
    opt = _configured(
        f"train.optimizer={name}",
        f"train.momentum={momentum}",
        "train.weight_decay=0",
        "train.scheduler=none",
    )
    assert isinstance(opt, cls)
    assert all(g["momentum"] == momentum and g["weight_decay"] == 0 for g in opt.param_groups)
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"]
    adam = _configured("train.optimizer=adam", "train.scheduler=none")
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_fused_update_on_cpu_equals_the_per_tensor_loop(name):
    """Adam/AdamW/SGD take PyTorch's fused kernel on CPU (RMSprop has none); two trained
    steps give the per-tensor loop's weights up to float rounding."""
    from medtl.training.task import OPTIMIZERS

    torch.manual_seed(0)
    ws = [torch.randn(300, requires_grad=True), torch.randn(7, 5, requires_grad=True)]
    ref = [w.detach().clone().requires_grad_() for w in ws]
    start = [w.detach().clone() for w in ws]
    groups = [{"params": ws, "lr": 0.01, "weight_decay": 1e-4}]
    opt = OPTIMIZERS[name](groups, 0.9)
    assert opt.param_groups[0].get("fused") is (None if name == "rmsprop" else True)
    kw = {"momentum": 0.9} | ({"nesterov": True} if name == "sgd" else {})
    plain = type(opt)(ref, lr=0.01, weight_decay=1e-4, **({} if "adam" in name else kw))
    for _ in range(2):
        for a, b in zip(ws, ref, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt.step()
        plain.step()
    for a, b, a0 in zip(ws, ref, start, strict=True):
        assert torch.allclose(a, b, atol=1e-7) and not torch.allclose(a, a0)


def test_bad_values_are_config_errors():
    from medtl.utils.errors import ConfigError

    for text in ("train.momentum=1.5", "train.plateau_factor=1", "train.min_lr=0.01"):
        with pytest.raises(ConfigError, match=text.split("=")[0]):
            load_config(overrides=[text])


def test_two_stage_lowers_every_lr_at_the_unfreeze_epoch(phantoms, tmp_path):
    run = train_tiny(
        phantoms,
        tmp_path,
        "model.strategy=two_stage",
        "model.warmup_epochs=1",
        "model.unfreeze_lr_mult=0.1",
        "model.encoder_lr_mult=1.0",
        "train.scheduler=none",
        "train.epochs=3",
        "train.max_steps_per_epoch=1",
    )
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    lrs = [(float(r["lr_encoder"]), float(r["lr_decoder+heads"])) for r in rows]
    assert lrs == [pytest.approx((1e-3, 1e-3)), pytest.approx((1e-4, 1e-4))] * 1 + [
        pytest.approx((1e-4, 1e-4))
    ]
    assert "every lr x 0.1" in (run / "train.log").read_text()


def test_gradients_are_freed_after_each_optimizer_step():
    """MedtlTask.optimizer_step: Lightning's step, then every gradient set to None (not
    kept through the next forward); the weights did move."""
    cfg = load_config(overrides=["model.weights=none", "model.encoder=resnet18"])
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    task = MedtlTask(net, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    task.compute_loss(task(x), y, torch.zeros(2, dtype=torch.long))["loss"].backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    weight = next(net.seg_head.parameters())
    before = weight.detach().clone()
    task.optimizer_step(0, 0, opt)
    assert all(p.grad is None for p in net.parameters())
    assert not torch.equal(before, weight)


def test_the_strategy_schedule_is_a_lightning_finetuning_callback():
    """StrategyFinetuning freezes two_stage's encoder before training and unfreezes the last
    model.unfreeze_stages at the warmup epoch, in place: the optimiser keeps its two groups,
    and the still-frozen stages stay in eval mode, so a training-mode forward leaves their
    BatchNorm statistics alone while the unfrozen ones update theirs."""
    from lightning.pytorch.callbacks import BaseFinetuning

    from medtl.models.stages import encoder_stages
    from medtl.training.callbacks import StrategyFinetuning

    cfg = load_config(
        overrides=["model.strategy=two_stage", "model.warmup_epochs=1", "model.unfreeze_stages=2"]
    )
    torch.manual_seed(0)
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    task = MedtlTask(net, cfg)
    schedule = StrategyFinetuning()
    assert isinstance(schedule, BaseFinetuning)
    schedule.freeze_before_training(task)
    assert not any(p.requires_grad for p in net.encoder.parameters())
    opt = task.configure_optimizers()["optimizer"]
    schedule.finetune_function(task, 1, opt)
    stages = encoder_stages(net.encoder)
    trains = [all(p.requires_grad for m in s for p in m.parameters()) for s in stages]
    assert trains == [False, False, False, True, True] and task.current_stages == 2
    assert [g["name"] for g in opt.param_groups] == ["encoder", "decoder+heads"]
    task.train()
    frozen_bn, open_bn = net.encoder.bn1, net.encoder.layer4[0].bn1
    before = frozen_bn.running_mean.clone(), open_bn.running_mean.clone()
    net(torch.rand(2, 3, 32, 32))
    assert torch.equal(frozen_bn.running_mean, before[0]) and not frozen_bn.training
    assert not torch.equal(open_bn.running_mean, before[1]) and open_bn.training
