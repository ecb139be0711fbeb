"""From ``cfg.data`` to checked samples, splits and data loaders (shared by train/evaluate)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medtl.configuration.loading import Config
from medtl.data.cache.decode import DecodeSpec
from medtl.data.cache.modes import cached_samples, reuse_decoded
from medtl.data.class_filter import keep_classes
from medtl.data.dataset import CachedDataset, SampleCache, label_indices
from medtl.data.layouts import Dataset, discover
from medtl.data.layouts.msd import names_from_dataset
from medtl.data.masks.scan import resolve_into
from medtl.data.masks.scheme import MaskScheme
from medtl.data.samplers import EpochSeededSampler, ShardedEvalSampler
from medtl.utils.errors import DataError

log = logging.getLogger("medtl")


@dataclass
class PreparedData:
    """Samples with their class indices and the decoded cache."""

    dataset: Dataset
    classes: list[str]
    labels: list[int]
    cache: SampleCache


def needs_masks(task: str) -> bool:
    return task in ("segmentation", "multitask")


def _check_task(cfg: Config, ds: Dataset) -> None:
    """Keep ``data.classes``; check that the data has what ``cfg.task`` needs (masks for
    every image, at least two classes), else a DataError naming the folder and the fix."""
    keep_classes(ds, cfg.data.classes)
    if needs_masks(cfg.task):
        if ds.problems:
            raise DataError(
                f"{ds.problems[0]}; add the missing file or move the other out of {ds.root}"
            )
        if not ds.has_masks:
            raise DataError(
                f"{ds.root}: layout '{ds.layout}' has no masks; use task=classification or add masks"
            )
    if cfg.task in ("classification", "multitask") and len(ds.classes) < 2:
        raise DataError(
            f"{ds.root}: task={cfg.task} needs class folders (>= 2 classes), found {ds.classes or 'none'}"
        )


def load_samples(
    cfg: Config, root: str | Path | None = None, scheme: MaskScheme | None = None
) -> Dataset:
    """Discover and check the data for ``cfg.task``, with duplicate groups assigned when
    ``data.group_duplicates`` (k-fold designs split these samples without training).

    In mask tasks an image without a mask (or a mask without an image) is an error naming
    the file; for classification the labels must name at least two classes. The hashes
    come from :func:`decoded`: inside :func:`medtl.data.cache.modes.reuse_decoded` (as in
    :func:`prepare`) that decode is the one the loaders use.

    ``ds.mask_scheme`` says what the masks mean: ``scheme`` when given (a trained run's,
    :func:`medtl.runs.folder.run_scheme`: no mask file is scanned), else decided from the
    files (:func:`medtl.data.masks.scan.resolve_into`, recorded in ``cfg.data``); either way
    it carries ``data.mask_resize`` to every mask read.
    """
    own = root is None or str(root) == str(cfg.data.root)  # else e.g. an external test set
    root = root or cfg.data.root
    if root is None:
        raise DataError("no data given; set data.root=FOLDER (or run 'medtl synth phantoms' first)")
    ds = discover(
        root,
        cfg.data.layout,
        slice_axis=cfg.data.slice_axis,
        empty_slice_fraction=cfg.data.empty_slice_fraction,
    )
    if ds.layout == "dicom":  # classes from a DICOM tag or a folder level
        from medtl.data.layouts.dicom_tree import apply_labels

        apply_labels(ds, cfg.data.label_tag, cfg.data.label_level)
    if own:  # the data to split
        _check_premade(ds)
    if ds.unused:
        from medtl.data.layouts.explain import short

        log.warning("%s: not used by layout '%s': %s", ds.root, ds.layout, short(ds.unused))
    _check_task(cfg, ds)
    apply_names_and_intensity(ds, cfg.data.group_pattern, cfg.data.window)
    if needs_masks(cfg.task):  # what the masks mean, decided (and recorded in cfg) or an error
        _check_seg_masks(ds)
        ds.mask_scheme = _mask_scheme(cfg, ds, scheme)
    if cfg.data.group_duplicates:
        from medtl.data.dedup import assign_groups

        ds.samples = assign_groups(ds.samples, hashes=decoded(cfg, ds).hashes)
    return ds


def _check_seg_masks(ds: Dataset) -> None:
    """A DICOM SEG mask that does not fit its DICOM image (size, referenced instance) is an
    error naming both files (:func:`medtl.data.readers.seg.seg_problems`); the SEGs'
    segment labels name the labels unless the data name them otherwise."""
    from medtl.data.readers.seg import seg_label_names, seg_problems

    ds.label_names = ds.label_names or seg_label_names(ds.samples)
    lines = seg_problems(ds.samples)
    if lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise DataError(lines[0] + more)


def _mask_scheme(cfg: Config, ds: Dataset, scheme: MaskScheme | None) -> MaskScheme:
    """``scheme`` (a run's, checked against the structure folders) or the one decided from
    the files, with ``data.mask_resize``."""
    if scheme is None:
        names_from_dataset(cfg.data, ds)  # MSD dataset.json label names
        return resolve_into(cfg.data, ds).resized(cfg.data.mask_resize)
    found = next((s.meta["structures"] for s in ds.samples if s.meta.get("structures")), None)
    if scheme.multilabel and tuple(found or ()) != scheme.names:
        raise DataError(
            f"{ds.root}: structures {', '.join(found or ()) or 'none'} differ from the run's "
            f"({', '.join(scheme.names)}); evaluate on data with the same mask folders"
        )
    return scheme


def _check_premade(ds: Dataset) -> None:
    """A pre-made split without training images is an error naming what was found and
    what the layout passed over (a training folder under an unknown name, most often)."""
    splits = {s.split for s in ds.samples}
    if None in splits or "train" in splits:
        return
    from collections import Counter

    from medtl.data.layouts.explain import short

    counts = ", ".join(f"{k}={n}" for k, n in sorted(Counter(s.split for s in ds.samples).items()))
    unused = f"; not used: {short(ds.unused)}" if ds.unused else ""
    raise DataError(
        f"{ds.root}: layout '{ds.layout}' found only {counts} images and no training images"
        f"{unused}; put them in train/ (or training/) beside the others"
    )


def decoded(cfg: Config, ds: Dataset) -> SampleCache:
    """``ds``'s samples decoded at ``data.image_size`` into the ``data.cache`` mode (or
    the decode reused, see :func:`medtl.data.cache.modes.cached_samples`)."""
    masks = ds.mask_scheme or MaskScheme("binary").resized(cfg.data.mask_resize)
    spec = DecodeSpec(
        cfg.data.image_size,
        needs_masks(cfg.task) or ds.has_masks,
        ds.window,
        ds.fallback_window,
        masks,
    )
    return cached_samples(
        ds.samples, spec, cfg.data.cache, cfg.data.cache_dir, cfg.data.in_memory_limit_mb
    )


def apply_names_and_intensity(ds: Dataset, group_pattern: str | None, window: str | None) -> None:
    """Set patient groups from names and the intensity windows on ``ds`` (in place).

    ``group_pattern``: a regex (first group = patient id), None for auto-detection, or
    ``"none"`` to switch names off. ``window``: ``"C,W"`` or a preset name
    (:data:`medtl.data.readers.dicom.WINDOW_PRESETS`). Without a window, DICOMs that carry none are
    scaled by one data-set-wide range (:func:`medtl.data.readers.dicom.dataset_range`).
    """
    from medtl.data.groups import group_by_names
    from medtl.data.readers.dicom import dataset_range, is_dicom, parse_window
    from medtl.data.refs import source_file

    off = str(group_pattern or "").strip().lower() == "none"
    ds.samples, decision = group_by_names(ds.samples, None if off else group_pattern, not off)
    ds.grouping = decision.to_dict()
    ds.window = parse_window(window)
    dicoms = sorted({source_file(s.image) for s in ds.samples if is_dicom(source_file(s.image))})
    if dicoms and ds.window is None:
        ds.fallback_window = dataset_range(dicoms)
        if ds.fallback_window is not None:
            log.info("DICOM without a window: one data-set-wide range %s", ds.fallback_window)


def prepare(
    cfg: Config, root: str | Path | None = None, scheme: MaskScheme | None = None
) -> PreparedData:
    """Discover, check and decode (once: grouping and loaders share the decode) every
    sample at ``cfg.data.image_size``; ``scheme``: a trained run's mask scheme (the mask
    files are then not scanned, see :func:`load_samples`)."""
    with reuse_decoded():
        ds = load_samples(cfg, root, scheme)
        cache = decoded(cfg, ds)
    return PreparedData(ds, ds.classes, label_indices(ds.samples, ds.classes), cache)


def make_loader(
    data: PreparedData, indices: list[int], cfg: Config, train: bool, augment: str | None = None
) -> DataLoader:
    """A DataLoader over cached rows; shuffled with augmentation when ``train``."""
    if train and cfg.data.augment_copies:
        # an offline K-x augmentation done on the fly: every training image appears
        # 1 + K times per epoch, each time augmented differently
        indices = list(indices) * (1 + cfg.data.augment_copies)
    ds = CachedDataset(
        data.cache, indices, data.labels, augment=(augment or cfg.data.augment) if train else "none"
    )
    return loader_for(ds, cfg, train)


def loader_for(ds: TorchDataset, cfg: Config, train: bool) -> DataLoader:
    """DataLoader with medtl's samplers: seeded per-epoch shuffling (train) or exact
    sharded evaluation order; both shard over DDP ranks themselves."""
    workers = cfg.data.workers
    n = len(ds)
    return DataLoader(
        ds,
        batch_size=cfg.train.batch_size,
        sampler=EpochSeededSampler(n, cfg.train.seed) if train else ShardedEvalSampler(n),
        drop_last=train and n > cfg.train.batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
