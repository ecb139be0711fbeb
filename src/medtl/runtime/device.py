"""Where medtl computes: the device (``train.accelerator``, ``--device``), the precision
(``train.precision``) and the DataLoader settings that go with them.

``auto`` picks CUDA when torch sees a CUDA GPU, else Apple's MPS, else the CPU; training,
evaluate, predict, explain, the app and compare resolve it the same way, so a run trained
on a GPU is also evaluated there. ``precision=auto`` is ``bf16-mixed`` on a CUDA GPU that
supports bfloat16 (``torch.cuda.is_bf16_supported()``: Ampere and newer) and ``32``
elsewhere (CPU and MPS keep fp32: bf16 autocast is slower than fp32 on most CPUs).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import torch

from medtl.utils.errors import ConfigError

#: the values ``--device`` and ``train.accelerator`` take (``gpu`` = cuda, else mps)
DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_accelerator(want: str = "auto") -> str:
    """``auto``/``gpu``/``cuda``/``mps``/``cpu`` -> the accelerator used here: ``cuda``,
    ``mps`` or ``cpu``. ``auto`` falls back to the CPU; asking for a GPU that is not
    there is a ConfigError (a silent CPU run would take hours)."""
    want = (want or "auto").lower()
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if want == "cpu":
        return "cpu"
    if want in ("auto", "gpu"):
        if cuda:
            return "cuda"
        if mps:
            return "mps"
        if want == "auto":
            return "cpu"
    elif want == "cuda" and cuda or want == "mps" and mps:
        return want
    if want not in ("gpu", "cuda", "mps"):
        raise ConfigError(f"unknown device '{want}': use one of {', '.join(DEVICES)}")
    raise ConfigError(
        f"device {want} asked for but torch sees none here (torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda or 'none'}); use --device auto (or cpu, "
        "train.accelerator=auto)"
    )


def runs_on_cpu(want: str = "auto") -> bool:
    """Whether work configured with ``want`` runs on the CPU here (never raises: a run
    trained with ``cuda`` and used on a machine without one counts as CPU)."""
    try:
        return resolve_accelerator(want) == "cpu"
    except ConfigError:
        return True


def resolve_device(want: str = "auto") -> torch.device:
    """:func:`resolve_accelerator` as a ``torch.device`` (``cuda`` = the current GPU)."""
    return torch.device(resolve_accelerator(want))


def resolve_precision(precision: str, accelerator: str) -> str:
    """``train.precision`` for Lightning: ``auto`` = ``bf16-mixed`` on a CUDA GPU with
    bfloat16 support, else ``32``; any other value as given."""
    if precision != "auto":
        return precision
    if accelerator == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32"


def device_name(accelerator: str) -> str:
    """What the device is, for train.log and run.json (the GPU's name on CUDA)."""
    if accelerator == "cuda":
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return {"mps": "Apple MPS", "cpu": "CPU"}.get(accelerator, accelerator)


def device_facts(want: str, precision: str) -> dict[str, Any]:
    """``{"asked", "accelerator", "name", "precision"}`` for run.json."""
    acc = resolve_accelerator(want)
    return {
        "asked": want,
        "accelerator": acc,
        "name": device_name(acc),
        "precision": resolve_precision(precision, acc),
    }


def tune_loader(loader: Any, accelerator: str, workers: int | None = None) -> Any:
    """On CUDA: pinned host memory (so Lightning's non_blocking copies overlap the step) and
    ``workers`` loading processes (default: half the usable cores, at most 4) where the
    loader had none (``data.workers=0``); elsewhere unchanged."""
    if accelerator != "cuda" or loader is None:
        return loader
    if workers is None:
        from medtl.utils.parallel import usable_cores

        workers = min(4, max(1, usable_cores() // 2))
    loader.pin_memory = True
    loader.pin_memory_device = ""
    if loader.num_workers == 0 and workers > 0:
        loader.num_workers = workers
    return loader


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float | None) -> timedelta | None:
    """A time budget: seconds (``90``), ``30s``/``30m``/``2h``/``1d`` (and sums such as
    ``1h30m``) or Lightning's ``DD:HH:MM:SS``; None/empty/0 = no budget."""
    if text is None or str(text).strip() in ("", "0", "none", "None"):
        return None
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    if re.fullmatch(r"\d+:\d+:\d+:\d+", raw):
        d, h, m, s = (int(p) for p in raw.split(":"))
        return timedelta(days=d, hours=h, minutes=m, seconds=s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", raw)
    if parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[smhd])+\s*", raw):
        return timedelta(seconds=sum(float(v) * _UNITS[u] for v, u in parts))
    raise ConfigError(
        f"time budget '{text}' not understood: give seconds (1800), 30m, 2h, 1h30m or DD:HH:MM:SS"
    )


def format_duration(seconds: float) -> str:
    """``125`` -> ``2m05s``; ``3700`` -> ``1h01m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
