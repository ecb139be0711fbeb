"""The Python API: what the CLI and users call. Importing it imports nothing heavy; each
verb imports what it needs.

Example::

    from medtl import api

    api.synth("phantoms", n=40, size=64)
    run = api.train(data="phantoms", image_size=64, epochs=1, weights="none")
    print(api.format_summary(api.evaluate(run)))
    result = api.load(run).predict(image)  # a numpy array or PIL image in memory

Settings are Python keywords (see :func:`medtl.configuration.settings.settings_overrides`): a key's last
part when it is unique (``epochs=1``), a section dict (``train={"seed": 1}``), ``data=``
the data folder; a :class:`~medtl.configuration.loading.Config` or YAML path may come first. No call
changes process-wide state: warnings are scoped to the call, ``train.threads`` holds for
the call only; the allocator tuning and a process-wide thread count are opt-in
(:func:`configure_cpu`, applied by the ``medtl`` command).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtl.configuration.loading import Config
    from medtl.inference.predictor import Predictor
    from medtl.runs.records import EvalSummary

__all__ = [
    "train",
    "evaluate",
    "predict",
    "load",
    "explain",
    "app",
    "format_summary",
    "synth",
    "audit",
    "audit_preview",
    "slices",
    "models_table",
    "demo",
    "compare",
    "plan",
    "collect",
    "report",
    "export",
    "config",
    "load_config",
    "configure_cpu",
]


def train(
    config: Config | str | Path | None = None,
    *,
    progress: bool = True,
    splits: dict[str, list[int]] | None = None,
    **settings: Any,
) -> Path:
    """Train one model; returns the run folder.

    ``config``: a Config (used as is without ``settings``), a YAML file or None (defaults);
    ``settings`` as in the module docstring, e.g. ``train(data="phantoms", epochs=1)``.
    ``resume=RUN`` continues that run from its own config (``epochs=`` may extend it).
    """
    from medtl.configuration.loading import Config
    from medtl.configuration.settings import config_from_settings
    from medtl.training.fit import train as run_training
    from medtl.training.resume import resume_config

    if "resume" in settings and config is None:
        config = resume_config(settings.pop("resume"))
    if not isinstance(config, Config) or settings:
        config = config_from_settings(config, **settings)
    return run_training(config, progress=progress, splits=splits)


def evaluate(
    run: str | Path,
    data: str | Path | None = None,
    overrides: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a run; returns the summary. ``options``: those of
    :func:`medtl.evaluation.evaluate.evaluate` (``split``, ``tta``, ``save_images``, ``plots``,
    ``optimise``) and where it runs as keywords (``devices=2``, ``threads=1`` =
    ``train.devices``, ``train.threads``; the run's own settings are not changed).

    ``config=N`` (rank, cell id or cell folder; ``run`` is then a comparison folder) or a
    cell folder as ``run`` evaluates the configuration's fold ensemble
    (:mod:`medtl.comparison.ensemble`; options ``split``, ``tta``, ``save_images``, ``plots``,
    ``strict``; ``class_offsets="none"`` leaves out the class offsets chosen on CV). After
    ``decide=Decisions(calibrate=True)`` a graph in ``RUN/export`` that holds another
    temperature is named in a warning (:func:`medtl.exporting.stale_exports`)."""
    from medtl.comparison.ensemble import evaluate_ensemble, is_cell_folder
    from medtl.evaluation.evaluate import evaluate as run_evaluate
    from medtl.evaluation.processes import PROCESS_KEYS

    config, strict = options.pop("config", None), options.pop("strict", False)
    if config is not None or is_cell_folder(run):
        return evaluate_ensemble(run, config, data, overrides, strict=strict, **options)
    _no_offsets(run, options)

    process = [f"train.{k}={options.pop(k)}" for k in list(options) if f"train.{k}" in PROCESS_KEYS]
    summary = run_evaluate(run, data, overrides=[*(overrides or []), *process], **options)
    if getattr(options.get("decide"), "calibrate", False) and not summary.get("rank"):
        from medtl.exporting import warn_stale_exports

        warn_stale_exports(run)  # a RUN/export graph holding another temperature: one line each
    return summary


def predict(
    run: str | Path, inputs: list[str | Path], out: str | Path, **options: Any
) -> list[str]:
    """Predict image files into ``out`` (masks, overlays, predictions.csv); returns the paths.
    ``options``: ``tta``, ``optimise``, ``batch_size`` (:func:`medtl.inference.predictor.predict`).
    For images in memory use :func:`load`. ``config=N`` (``run`` a comparison folder) or a
    cell folder as ``run``: the fold ensemble (options ``tta``, ``batch_size``, ``strict``,
    ``class_offsets``)."""
    from medtl.comparison.ensemble import is_cell_folder, predict_ensemble
    from medtl.inference.predictor import predict as run_predict

    config, strict = options.pop("config", None), options.pop("strict", False)
    if config is not None or is_cell_folder(run):
        return predict_ensemble(run, config, inputs, out, strict=strict, **options)
    _no_offsets(run, options)
    return run_predict(run, inputs, out, **options)


def _no_offsets(run: str | Path, options: dict[str, Any]) -> None:
    """A single run has no class offsets: ``class_offsets`` given for one is an error."""
    if options.pop("class_offsets", None) is not None:
        from medtl.utils.errors import ConfigError

        raise ConfigError(
            f"{run}: --class-offsets is for a fold ensemble (CMP --config N); drop it"
        )


def load(
    run: str | Path, optimise: bool = True, tta: bool = False, device: str = "auto"
) -> Predictor:
    """A run's model in memory: ``load(RUN).predict(image)`` -> mask / probabilities / label;
    ``device``: auto (CUDA, else MPS, else CPU), cpu, cuda or mps."""
    from medtl.inference.predictor import load as load_predictor

    return load_predictor(run, optimise=optimise, tta=tta, device=device)


def explain(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path = "cam",
    method: str = "gradcam",
    target: str | None = None,
    layer: str | None = None,
    device: str = "auto",
) -> list[str]:
    """Grad-CAM maps of image files into ``out`` (``<name>_cam.png`` / ``.npy``); returns
    the paths (see :mod:`medtl.inference.explain`; needs the ``[explain]`` extra)."""
    from medtl.inference.explain import explain as run_explain

    return run_explain(run, inputs, out, method=method, target=target, layer=layer, device=device)


def app(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    device: str = "auto",
) -> Any:
    """Serve the run as a Gradio page on ``host:port`` (see :mod:`medtl.apps.gradio_app`; needs the
    ``[app]`` extra); ``block=False`` returns the running app (``.close()`` stops it)."""
    from medtl.apps.gradio_app import serve

    return serve(run, host=host, port=port, block=block, device=device)


def format_summary(summary: EvalSummary | dict[str, Any]) -> str:
    """A few human lines of an evaluation summary (see :func:`medtl.evaluation.evaluate.format_summary`):
    the :class:`~medtl.runs.records.EvalSummary` record (``read_summary(path)``), or the dict
    :func:`evaluate` returns, read into that record first."""
    from medtl.evaluation.evaluate import format_summary as fmt
    from medtl.runs.records import EvalSummary

    return fmt(summary if isinstance(summary, EvalSummary) else EvalSummary.from_dict(summary))


def load_config(
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """:func:`medtl.configuration.loading.load_config`: defaults, a YAML file, ``key=value`` strings."""
    from medtl.configuration.loading import load_config as load

    return load(file, overrides, base)


def configure_cpu(threads: int | None = 0, allocator: str = "tuned") -> None:
    """Opt in to medtl's process-wide CPU settings (what the CLI applies): intra-op
    ``threads`` (0 = every core, None = unchanged) and the glibc ``allocator`` tuning
    (see :mod:`medtl.runtime.cpu`)."""
    from medtl.runtime.cpu import configure_cpu as configure

    configure(threads, allocator)


def synth(
    out: str | Path,
    n: int = 120,
    size: int = 128,
    seed: int = 0,
    layout: str = "class_masks",
    labels: int = 0,
) -> Path:
    """Write the phantom data set (``class_masks`` with masks, or ``imagefolder`` without);
    ``labels=N`` (1-3) writes ``images/`` + ``masks/`` label maps instead (lesion, rings)."""
    from medtl.data.phantoms import make_imagefolder, make_label_phantoms, make_phantoms

    if labels:
        return make_label_phantoms(out, n=n, size=size, seed=seed, labels=labels)

    return (make_phantoms if layout == "class_masks" else make_imagefolder)(
        out, n=n, size=size, seed=seed
    )


def audit(data: str | Path, layout: str = "auto", overrides: list[str] | None = None) -> Any:
    """Audit a data folder (see :mod:`medtl.data.audit.report`); ``overrides``: ``data.*``
    ``key=value`` items that change how the files are read (:mod:`medtl.data.audit.keys`)."""
    from medtl.data.audit.keys import audit_data_config
    from medtl.data.audit.report import audit as run_audit

    keys = audit_data_config(overrides) if overrides else None
    return run_audit(data, layout=layout, data=keys)


def audit_preview(
    data: str | Path, out: str | Path | None = None, layout: str = "auto", n: int = 16
) -> Path:
    """A PNG grid of ``n`` sample images with mask outlines per class (``medtl audit
    --preview``); ``out`` defaults to ``DATA_preview.png`` beside the data folder."""
    from medtl.plots.preview import write_preview

    return write_preview(data, out, layout=layout, n=n)


def slices(
    volumes: str | Path,
    out: str | Path,
    slice_axis: int = 2,
    empty_slice_fraction: float = 1.0,
    window: str | None = None,
) -> dict[str, Any]:
    """Write a ``volumes`` data set as PNG slices, masks and ``OUT/slices.csv`` (group =
    volume id); see :func:`medtl.data.slices.write_slices`."""
    from medtl.data.readers.dicom import parse_window
    from medtl.data.slices import write_slices

    return write_slices(volumes, out, slice_axis, empty_slice_fraction, parse_window(window))


def models_table() -> str:
    """Text table of every encoder (params, channels, normalisation, weights on disk) and decoder."""
    from medtl.models.catalogue import models_table as table

    return table()


def demo(out: str | Path = "demo_runs", quick: bool = False) -> dict[str, Any]:
    """The main job on the phantoms: frozen vs fine-tuned pretrained EfficientNet-Lite0 U-Net."""
    from medtl.apps.demo import run_demo

    return run_demo(Path(out), quick=quick)


def compare(
    base: list[str],
    grid: list[str],
    folds: int = 0,
    out: str | Path = "compare",
    config_file: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    cells: list[list[str]] | None = None,
    test_fraction: float | None = None,
) -> Path:
    """Train every cell of ``grid`` on identical splits/folds; see :mod:`medtl.comparison`.

    ``cells`` lists the configurations explicitly (each a list of ``key=value``) instead of
    the cartesian product of ``grid``. ``test_fraction``: the share held out of the folds
    as a test split (default ``data.test_fraction``; 0: none, every image in the folds).
    """
    from medtl.comparison import compare as run_compare

    return run_compare(
        base,
        grid,
        folds=folds,
        out=Path(out),
        config_file=config_file,
        shard=shard,
        progress=progress,
        cell_list=cells,
        test_fraction=test_fraction,
    )


def plan(
    data: str | Path,
    task: str = "segmentation",
    budget: str | float = "30m",
    folds: int | None = None,
    out: str | Path | None = "plan.yaml",
    device: str = "auto",
    layout: str = "auto",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """A recipe for ``data`` fitted to its fingerprint and this machine's measured speed
    within ``budget`` (seconds, ``30m``, ``2h``), written to ``out`` (None: not written) as a
    config for ``medtl train -c`` / ``medtl compare -c --folds K``; returns the plan as a
    dict (keys with reasons, predicted time and memory, probes, fingerprint). ``folds``:
    None lets the plan choose (5 with 10+ independent groups when the budget allows), 0 =
    one split. ``overrides``: ``key=value`` of the keys that change how the data is read
    (those ``medtl audit`` takes, e.g. ``data.classes=[benign,malignant]``), planned on and
    carried into the recipe. See :mod:`medtl.planning.planner`."""
    from medtl.planning.planner import make_plan
    from medtl.planning.recipe import write_plan

    made = make_plan(data, task, budget, folds, device, layout, overrides=overrides)
    result = made.to_dict()
    if out is not None:
        result["out"] = str(write_plan(made, out))
    return result


def collect(out: str | Path, quiet: bool = False, write: bool = True) -> dict[str, Any]:
    """Merge the finished cells of a comparison folder (e.g. after ``--shard`` runs);
    ``write=False`` only returns the results."""
    from medtl.comparison import collect as run_collect

    if write:
        return run_collect(Path(out), quiet=quiet)
    return run_collect(Path(out), quiet=quiet, write=False)


def report(path: str | Path) -> Path:
    """Write ``report.html`` for a run or comparison folder; returns its path."""
    from medtl.reporting import write_report

    return write_report(Path(path))


def export(
    run: str | Path,
    int8: bool = False,
    opset: int = 17,
    config: str | int | None = None,
    out: str | Path | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """ONNX export with a parity check (and optional int8); see :mod:`medtl.exporting`.
    ``config=N`` (``run`` a comparison folder) or a cell folder as ``run``: one graph of the
    configuration's fold ensemble (:func:`medtl.exporting.export_ensemble`)."""
    from medtl.comparison.ensemble import is_cell_folder
    from medtl.exporting import export_ensemble, export_onnx

    if config is not None or is_cell_folder(run):
        return export_ensemble(run, config, out=out, opset=opset, strict=strict, int8=int8)
    return export_onnx(Path(run), out=out, int8=int8, opset=opset)


def config(
    overrides: list[str] | None = None, file: str | Path | None = None, **settings: Any
) -> Config:
    """A validated Config from ``key=value`` strings, a YAML file and keyword ``settings``
    (as :func:`train` takes them), without training."""
    from medtl.configuration.settings import config_from_settings

    cfg = load_config(file, overrides)
    return config_from_settings(cfg, **settings) if settings else cfg
