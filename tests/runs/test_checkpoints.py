"""AtomicCheckpointIO: best and last of the same training moment share one file; nothing else does."""

from __future__ import annotations

import torch

from medtl.training.callbacks import AtomicCheckpointIO


def _ckpt(epoch: int, step: int, value: float) -> dict:
    return {"epoch": epoch, "global_step": step, "state_dict": {"w": torch.full((3,), value)}}


def _load(path):
    return torch.load(path, weights_only=True)


def test_same_moment_is_a_hard_link_and_a_later_save_breaks_it(tmp_path):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(0, 5, 1.0), best)
    io.save_checkpoint(_ckpt(0, 5, 1.0), last)
    assert best.stat().st_ino == last.stat().st_ino and best.stat().st_nlink == 2
    assert not list(tmp_path.glob(".*.tmp"))

    io.save_checkpoint(_ckpt(1, 10, 2.0), last)  # a later epoch that did not improve
    assert best.stat().st_ino != last.stat().st_ino and best.stat().st_nlink == 1
    assert _load(best)["epoch"] == 0 and _load(best)["state_dict"]["w"].tolist() == [1.0] * 3
    assert _load(last)["epoch"] == 1 and _load(last)["state_dict"]["w"].tolist() == [2.0] * 3


def test_another_moment_or_a_replaced_file_is_written_in_full(tmp_path):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(0, 5, 1.0), best)
    io.save_checkpoint(_ckpt(1, 10, 2.0), last)  # not the same moment
    assert best.stat().st_ino != last.stat().st_ino
    assert _load(last)["state_dict"]["w"].tolist() == [2.0] * 3

    io.save_checkpoint(_ckpt(2, 15, 3.0), best)
    best.unlink()  # replaced behind its back (the file system may reuse the inode number)
    torch.save(_ckpt(9, 99, 9.0), best)
    io.save_checkpoint(_ckpt(2, 15, 3.0), last)
    assert _load(last)["epoch"] == 2 and _load(last)["state_dict"]["w"].tolist() == [3.0] * 3


def test_model_pt_holds_the_best_weights_reloaded_only_when_training_went_on(
    phantoms, tmp_path, monkeypatch
):
    """model.pt = best.ckpt's weights. When the best checkpoint was the last thing written
    (no optimiser step after it) the weights in memory are used; otherwise best.ckpt is
    read back (here the seeded 3-epoch run at lr 0.05 is best in epoch 0)."""
    from tests.conftest import record_calls, train_tiny

    loaded = record_calls(monkeypatch, torch, "load")
    for epochs, reloaded in ((1, False), (3, True)):
        loaded.clear()
        run = train_tiny(phantoms, tmp_path, f"train.epochs={epochs}", "train.lr=0.05")
        assert any(p.endswith("best.ckpt") for p in loaded) is reloaded
        best = _load(run / "checkpoints" / "best.ckpt")
        assert (best["epoch"] < epochs - 1) is reloaded
        bundle = _load(run / "model.pt")["state_dict"]
        assert all(torch.equal(v, best["state_dict"]["net." + k]) for k, v in bundle.items())
