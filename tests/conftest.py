"""Shared fixtures: tiny phantom data sets (``phantoms``, ``phantoms12``, ``label_phantoms``)
and trained runs, made once per test session; ``one_thread`` for a module's torch threads.

``make test`` runs the suite on one pytest-xdist worker per core (``-n``, whole files per
worker), then the tests marked ``serial`` alone (none at present); each worker computes on
one thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one compute thread per worker, so that N workers on N cores do not fight over them
    # (torch reads these when it is first imported, which is after this file; decoding reads
    # MEDTL_DECODE_THREADS); what the caller set is kept
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MEDTL_DECODE_THREADS"):
        os.environ.setdefault(_var, "1")

# the allocator the medtl command uses (train.cpu_allocator=tuned): a test process trains
# hundreds of tiny models, and a test that calls medtl.cli.parser.main tunes it anyway, so every
# test runs with it from the start (tests/runtime/test_cpu.py checks both allocators in
# their own subprocesses, which start with glibc's defaults)
from medtl.runtime.cpu import configure_cpu  # noqa: E402  (torch is not imported here)

configure_cpu(threads=None, allocator="tuned")

BUSI = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "busi" / "Dataset_BUSI_with_GT"
)

TINY = [
    "data.image_size=32",
    "train.epochs=1",
    "train.batch_size=4",
    "model.weights=none",
    "model.encoder=resnet18",
    "data.augment=none",
    "train.patience=0",
    "train.threads=1",
    "train.memory_format=contiguous",  # runs compared for equality must not differ in layout
]

# ``--cpu-durations=FILE``: CPU seconds per test, for finding the slow ones on a shared machine
pytest_plugins = ["tests.cpu_durations"]

_SESSION_DIRS: set[Path] = set()  # made by the session fixtures below: kept to the end


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"BUSI data set not found at {BUSI}")
    no_gpu = pytest.mark.skip(reason="no CUDA GPU here (benchmarks/gpu_check.sh runs these)")
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    cuda = _cuda_available() if gpu_items else False
    for item in items:
        if "busi" in item.keywords and not BUSI.is_dir():
            item.add_marker(skip)
    for item in gpu_items if not cuda else []:
        item.add_marker(no_gpu)
    # files with a test marked slow first, each file's own order kept: pytest-xdist hands
    # out whole files in this order (make test passes --no-loadscope-reorder), so the long
    # ones start early instead of leaving one worker busy at the end while the other idles
    slow_files = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.path not in slow_files)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def _drop_module_folders(request, tmp_path_factory):
    """Delete the folders a test module made with ``tmp_path_factory`` (its module-scoped
    runs) when the module is done, unless one of its tests failed: every tiny training
    leaves ~0.4 GB of checkpoints, which pytest would otherwise keep until the session ends
    (a whole session peaked near 30 GB). Per-test ``tmp_path`` folders are pytest's own
    (removed when the test passes); the session fixtures' folders are kept."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        return  # keep everything to look at
    for path in set(base.iterdir()) - before - _SESSION_DIRS:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _session_dir(tmp_path_factory, name: str) -> Path:
    path = tmp_path_factory.mktemp(name)
    _SESSION_DIRS.add(path)
    return path


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> Path:
    """16 phantom images (benign/malignant/normal with masks), 32 px."""
    from medtl.data.phantoms import make_phantoms

    return make_phantoms(_session_dir(tmp_path_factory, "data") / "phantoms", n=16, size=32, seed=0)


@pytest.fixture(scope="session")
def phantoms12(tmp_path_factory) -> Path:
    """12 phantom images (benign/malignant/normal with masks), 32 px: the comparison, report
    and export tests' data; tests only read it."""
    from medtl.data.phantoms import make_phantoms

    return make_phantoms(_session_dir(tmp_path_factory, "data") / "data", n=12, size=32, seed=0)


@pytest.fixture(scope="session")
def label_phantoms(tmp_path_factory) -> Path:
    """12 label-map phantoms, 32 px: masks hold 0 background, 1 lesion, 2 ring, described by
    ``labels.yaml``; tests only read them."""
    from medtl.data.phantoms import make_label_phantoms

    root = _session_dir(tmp_path_factory, "data") / "ph2"
    return make_label_phantoms(root, n=12, size=32, labels=2)


@pytest.fixture(scope="module")
def one_thread():
    """One torch compute thread for a test module (``pytestmark =
    pytest.mark.usefixtures("one_thread")``), the caller's count restored afterwards: on a
    shared small machine, spinning threads of several processes make every convolution many
    times slower. Imports torch when first used, not when this file loads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def record_calls(monkeypatch, owner, name: str) -> list[str]:
    """Patch ``owner.<name>`` to note ``str()`` of each call's first argument (a path),
    then call the real one; returns the list the notes go to."""
    calls: list[str] = []
    real = getattr(owner, name)

    def recording(first, *args, **kwargs):
        calls.append(str(first))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def train_tiny(data: Path, out: Path, *extra: str) -> Path:
    from medtl.configuration.loading import load_config
    from medtl.training.fit import train

    cfg = load_config(overrides=[f"data.root={data}", f"output.dir={out}", *TINY, *extra])
    return train(cfg, progress=False)


@pytest.fixture(scope="session")
def seg_run(phantoms, tmp_path_factory) -> Path:
    return train_tiny(phantoms, _session_dir(tmp_path_factory, "runs"), "output.name=seg")


@pytest.fixture(scope="session")
def mt_run(phantoms, tmp_path_factory) -> Path:
    out = _session_dir(tmp_path_factory, "runs")
    return train_tiny(phantoms, out, "task=multitask", "output.name=mt")


@pytest.fixture(scope="session")
def mt_run_2epochs(phantoms, tmp_path_factory) -> Path:
    """A multitask run of two epochs (best and last checkpoint differ); tests only read it or
    add eval/ folders."""
    out = _session_dir(tmp_path_factory, "runs")
    return train_tiny(phantoms, out, "train.epochs=2", "task=multitask", "output.name=mt2")


def train_in_forked_child(stderr: Path, args: list[str], prepare=None) -> None:
    """Target of a forked child (multiprocessing's ``fork`` context): ``medtl train ARGS``
    with its stderr in the file ``stderr``, ``prepare()`` called first; exits with the
    command's code and never returns into pytest. The child computes on one torch thread: a
    forked child must not use the parent's intra-op thread pool (it can deadlock)."""
    import sys
    import traceback

    import torch

    from medtl.cli import main

    code = 1
    try:
        torch.set_num_threads(1)
        sys.stderr = open(stderr, "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        os.dup2(sys.stderr.fileno(), 2)
        if prepare is not None:
            prepare()
        code = main(["train", "--no-progress", *args])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``medtl ARGS`` in this process: exit code, stdout and stderr."""
    from medtl.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
