"""kill -9 of a ``medtl train`` process at chosen points, then resume: metrics.csv, steps.csv
and run.json end up whole and equal to those of an uninterrupted run (timing columns aside).

The training that dies is a forked child of the test process (torch and Lightning already
imported, so it starts at once instead of paying a new interpreter's imports): before it
trains, it wraps a method of ``medtl.training.callbacks`` in its own copy of the module, and
the wrapper kills the child with a real SIGKILL at the point the test names.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

from medtl.utils.files import read_csv
from tests.conftest import train_in_forked_child

ARGS = [
    "data.image_size=32",
    "train.batch_size=4",
    "model.weights=none",
    "model.encoder=resnet18",
    "train.epochs=3",
    "train.deterministic=true",
    "train.patience=0",
    "train.threads=1",
    "train.memory_format=contiguous",
    "data.augment=light",  # the random state of the augmentation must survive the resume
]
TIMING = ("epoch_time_s",)
FORK = multiprocessing.get_context("fork")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(kill_at: str) -> None:
    """In the child: SIGKILL at ``kill_at`` ("ckpt:NAME:EPOCH": right after the checkpoint
    NAME of EPOCH is on disk; "step:N": right after optimiser step N's row is noted)."""
    import medtl.training.callbacks as module

    kind, *where = kill_at.split(":")
    if kind == "ckpt":
        name, epoch = where[0], int(where[1])
        real_save = module.AtomicCheckpointIO.save_checkpoint

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            real_save(self, checkpoint, path, storage_options)
            if Path(path).name == name and checkpoint.get("epoch") == epoch:
                _die()

        module.AtomicCheckpointIO.save_checkpoint = save_checkpoint
    else:
        step = int(where[0])
        real_end = module.StepLossCSV.on_train_batch_end

        def on_train_batch_end(self, trainer, *args):
            real_end(self, trainer, *args)
            if trainer.global_step == step:
                _die()

        module.StepLossCSV.on_train_batch_end = on_train_batch_end


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(path)]


def _train_in_process(*args: str) -> None:
    from medtl.cli.parser import main

    # train.deterministic sets torch's flag and Lightning CUBLAS_WORKSPACE_CONFIG, both
    # process-wide: restored for the tests that follow in this process
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))
        try:
            assert main(["train", "--no-progress", *args]) == 0
        finally:
            torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def reference(phantoms, tmp_path_factory) -> Path:
    """The uninterrupted run (3 epochs) the resumed ones must equal."""
    out = tmp_path_factory.mktemp("kill_ref")
    _train_in_process(f"data.root={phantoms}", f"output.dir={out}", *ARGS, "output.name=ref")
    return out / "ref"


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    [
        # epoch 1's checkpoints are on disk; its epoch-end rows of metrics.csv, steps.csv
        # and run.json are not
        "ckpt:last.ckpt:1",
        # in the middle of epoch 1 (9 training phantoms, batches of 4: 2 steps an epoch): its
        # first step was taken, the last checkpoint is epoch 0's
        "step:3",
    ],
)
def test_sigkill_then_resume_equals_uninterrupted(kill_at, phantoms, reference, tmp_path, capsys):
    args = [f"data.root={phantoms}", f"output.dir={tmp_path}", *ARGS, "output.name=killed"]
    stderr = tmp_path / "stderr.txt"
    stderr.write_text("")
    proc = FORK.Process(
        target=train_in_forked_child, args=(stderr, args, functools.partial(_arm, kill_at))
    )
    proc.start()
    proc.join(300)
    if proc.exitcode is None:  # never leave a training behind
        proc.kill()
        proc.join()
    assert proc.exitcode == -signal.SIGKILL, stderr.read_text()[-2000:]  # died at the point
    run = tmp_path / "killed"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # never corrupt
    assert last["epoch"] == (1 if kill_at.startswith("ckpt") else 0)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert [int(e["epoch"]) for e in read_csv(run / "metrics.csv")] == [0, 1][: last["epoch"] + 1]

    capsys.readouterr()
    _train_in_process(f"train.resume={run}")
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run)
    assert (run / "splits.json").read_text() == (reference / "splits.json").read_text()
    for name in ("metrics.csv", "steps.csv"):
        resumed, whole = _rows(run / name), _rows(reference / name)
        assert resumed == whole, name
    steps = read_csv(run / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, len(steps) + 1))
    for row in read_csv(run / "metrics.csv"):  # the epoch's mean step loss (equal batches)
        losses = [float(r["loss"]) for r in steps if r["epoch"] == row["epoch"]]
        assert float(row["train_loss"]) == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    facts = json.loads((run / "run.json").read_text())
    assert facts["status"] == "finished" and [e["epoch"] for e in facts["epochs"]] == [0, 1, 2]
    assert facts["best_epoch"] == json.loads((reference / "run.json").read_text())["best_epoch"]
