"""The run folder: naming, env.json, train.log, and the safe inference bundle ``model.pt``."""

from __future__ import annotations

import copy
import logging
import os
import platform
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from medtl._version import __version__
from medtl.configuration.loading import Config, config_from_dict, parse_channels
from medtl.data.masks.scheme import MaskScheme, scheme_from_config
from medtl.models.build import Net, build_loaded
from medtl.utils.errors import ConfigError, MedtlError
from medtl.utils.files import atomic_torch_save, atomic_write, atomic_write_json, read_records
from medtl.utils.memo import ScopedMemo
from medtl.utils.records import Shape, load_yaml

log = logging.getLogger("medtl")
BUNDLE = "model.pt"


RUN_DIR_ENV = "MEDTL_RUN_DIR"
JOB_ID_ENVS = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")


def process_rank() -> int:
    """This process's global rank from the launcher's environment (torchrun, SLURM,
    Lightning's own launcher); 0 when not distributed."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def _job_id() -> str | None:
    for key in JOB_ID_ENVS:
        value = os.environ.get(key)
        if value and value != "none":
            return "".join(c for c in value if c.isalnum() or c in "-_")[:24]
    return None


def run_name(cfg: Config) -> str:
    """``output.name`` or ``<task>-<arch>-<encoder>-<strategy>-<time or job id>``.

    Under torchrun or SLURM the job id replaces the time, so every rank derives one name.
    """
    if cfg.output.name:
        return cfg.output.name
    stamp = _job_id() or time.strftime("%Y%m%d-%H%M%S")
    arch = "cls" if cfg.task == "classification" else cfg.model.arch
    return f"{cfg.task[:3]}-{arch}-{cfg.model.encoder}-{cfg.model.strategy}-{stamp}"


def new_run_dir(cfg: Config) -> Path:
    """A fresh run folder under ``output.dir`` (a numeric suffix avoids clobbering)."""
    base = Path(cfg.output.dir).absolute() / run_name(cfg)
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()  # atomic: two processes starting at once get different folders
            return path
        except FileExistsError:
            path, k = base.with_name(f"{base.name}-{k}"), k + 1


def shared_run_dir(cfg: Config, wait_s: float = 300.0) -> tuple[Path, bool]:
    """The run folder for this process and whether this process owns (creates, writes) it.

    Rank 0 creates the folder and exports it in ``MEDTL_RUN_DIR`` for the processes that
    Lightning launches; ranks started by torchrun/SLURM derive the same name from the job
    id and wait for rank 0 to create it. Only the owner writes anything.
    """
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        return Path(given), False
    if process_rank() == 0:
        return new_run_dir(cfg), True
    path = Path(cfg.output.dir).absolute() / run_name(cfg)
    deadline = time.time() + wait_s
    while not path.is_dir():
        if time.time() > deadline:
            raise MedtlError(
                f"rank {process_rank()}: rank 0 did not create {path}; set output.name for all ranks"
            )
        time.sleep(0.2)
    return path, False


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


ENV_JSON = "env.json"
_CONFIG_FIX = "restore the config.yaml 'medtl train' wrote (or train a new run)"


def read_env_all(run: Path) -> list[dict[str, Any]]:
    """Every invocation recorded in ``RUN/env.json``, oldest first (the first one created
    the run, later ones resumed it); an older run's single record is a list of one."""
    return read_records(Path(run) / ENV_JSON)


def read_env(run: Path) -> dict[str, Any]:
    """The latest invocation of ``RUN/env.json`` (empty when there is none)."""
    found = read_env_all(run)
    return dict(found[-1]) if found else {}


def write_env(run: Path, cfg: Config) -> None:
    """Append this invocation to ``env.json`` (a list): versions, git commit, threads,
    device, seed, command line and time."""
    import lightning
    import segmentation_models_pytorch as smp
    import timm

    from medtl.runtime.device import resolve_accelerator

    atomic_write_json(
        run / ENV_JSON,
        [
            *read_env_all(run),
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "medtl": __version__,
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "lightning": lightning.__version__,
                "smp": smp.__version__,
                "timm": timm.__version__,
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "cuda": torch.cuda.is_available(),
                "accelerator": resolve_accelerator(cfg.train.accelerator),
                "seed": cfg.train.seed,
                "git_commit": _git_commit(),
                "argv": sys.argv,
            },
        ],
    )


def write_config(run: Path, cfg: Config) -> None:
    from medtl.configuration.loading import dump_config

    atomic_write(run / "config.yaml", lambda p: p.write_text(dump_config(cfg), encoding="utf-8"))


def read_config_doc(run: Path) -> dict[str, Any]:
    """``RUN/config.yaml`` as the mapping training wrote (read with ``yaml.safe_load``,
    bounded; a list, a tag or deep nesting is one DataError line naming the file)."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise MedtlError(
            f"{run} is not a medtl run folder (no config.yaml); give the folder 'medtl train' printed"
        )
    shape = Shape(path, _CONFIG_FIX)
    doc = shape.mapping(load_yaml(path, _CONFIG_FIX))
    for section, value in doc.items():
        if section != "task":
            shape.mapping(value, str(section), optional=True)
    return doc


def read_config(run: Path) -> Config:
    """The :class:`Config` of ``RUN/config.yaml`` (a wrong key or value names the file)."""
    doc = read_config_doc(run)
    try:
        return config_from_dict(doc)
    except ConfigError as exc:
        raise ConfigError(f"{Path(run) / 'config.yaml'}: {exc}; {_CONFIG_FIX}") from None


def run_scheme(run: Path | str | Config) -> MaskScheme:
    """The mask scheme a run was trained with, rebuilt from what it recorded: the
    ``data.mask_mode``, ``data.labels``, ``data.mask_colors``, ``data.mask_palette`` and
    ``data.mask_resize`` of ``RUN/config.yaml`` (or of ``run`` itself, a run's
    :class:`Config` as :func:`load_bundle` read it). Training writes its decision there (a
    binary decision leaves ``auto``, which reads back as binary), so evaluation, prediction,
    export and reports build the scheme once here and hand it along: no mask file is read."""
    cfg = run if isinstance(run, Config) else read_config(Path(run))
    return scheme_from_config(cfg.data)


def attach_log(run: Path) -> logging.Handler:
    """Send medtl's log to ``RUN/train.log`` (appends on resume)."""
    handler = logging.FileHandler(run / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def save_bundle(run: Path, net: Net, cfg: Config, classes: list[str]) -> Path:
    """``RUN/model.pt``: only tensors and plain values (loads with weights_only=True)."""
    bundle = {
        "format": "medtl-bundle-1",
        "medtl_version": __version__,
        "config": cfg.to_dict(),
        "classes": list(classes),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    return atomic_torch_save(bundle, run / BUNDLE)


_BUNDLES = ScopedMemo()  # (model.pt path, mtime, size) -> (net, config, classes) as loaded


def reuse_bundles() -> AbstractContextManager[None]:
    """Within this block (nested blocks join the outer one), loading the same unchanged
    ``model.pt`` again gives a copy of the network built the first time instead of a
    rebuild (about ten times faster for an EfficientNet-Lite0-UNet). Every caller gets its own
    copy to change; the copies are dropped when the outermost block ends."""
    return _BUNDLES.scope()


def load_bundle(run: Path) -> tuple[Net, Config, list[str]]:
    """Rebuild the trained network from ``RUN/model.pt`` (strict, no random init first;
    inside :func:`reuse_bundles` a copy of the one built before)."""
    path = Path(run) / BUNDLE
    if not path.is_file():
        raise MedtlError(
            f"{path} not found; train first ('medtl train ...') or give a finished run folder"
        )
    if not _BUNDLES.active:
        return _load_bundle(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _BUNDLES:
        _BUNDLES[key] = _load_bundle(path)  # kept as loaded, whatever a caller does to its copy
    return copy.deepcopy(_BUNDLES[key])


def _load_bundle(path: Path) -> tuple[Net, Config, list[str]]:
    try:
        bundle: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise MedtlError(
            f"{path}: not a readable medtl bundle ({exc.__class__.__name__}); retrain the run"
        ) from None
    cfg, classes = _bundle_parts(path, bundle)
    try:
        net = build_loaded(
            bundle["state_dict"],
            cfg.task,
            cfg.model.arch,
            cfg.model.encoder,
            n_classes=len(classes),
            in_channels=cfg.model.in_channels,
            dropout=cfg.model.dropout,
            normalize=cfg.model.normalize,
            decoder_channels=parse_channels(cfg.model.decoder_channels),
            seg_classes=run_scheme(cfg).channels,
        )
    except RuntimeError as exc:  # keys or shapes of another network
        first = str(exc).strip().splitlines()[0]
        raise MedtlError(
            f"{path}: its weights do not fit its config ({first}); retrain the run"
        ) from None
    net.eval()
    return net, cfg, classes


def _bundle_parts(path: Path, bundle: Any) -> tuple[Config, list[str]]:
    """The config and classes of a loaded bundle; a one-line error for a foreign file."""
    keys = ("config", "classes", "state_dict")
    if not isinstance(bundle, dict) or any(k not in bundle for k in keys):
        found = sorted(map(str, bundle))[:5] if isinstance(bundle, dict) else type(bundle).__name__
        raise MedtlError(
            f"{path}: not a medtl bundle (expected keys {', '.join(keys)}; found {found}); "
            "give the model.pt that 'medtl train' wrote, or retrain the run"
        )
    if not isinstance(bundle["config"], dict) or not isinstance(bundle["state_dict"], dict):
        raise MedtlError(f"{path}: not a medtl bundle (config or state_dict is not a mapping)")
    try:
        return config_from_dict(bundle["config"]), [str(c) for c in bundle["classes"]]
    except MedtlError as exc:
        raise MedtlError(f"{path}: its config is not valid ({exc})") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise MedtlError(f"{path}: its config is not valid ({exc.__class__.__name__})") from None
