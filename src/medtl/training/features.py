"""Frozen-encoder feature caching: encode every training image once, train only the heads.

With ``model.strategy=frozen`` the encoder is a fixed function, so its features can be
computed once (in eval mode, exactly what the frozen encoder computes during training) and
each step only runs the decoder and heads. Random per-epoch augmentation would need a new
encoding every epoch, so the cache is used when ``data.augment=none`` or with
``data.augment_copies=K`` (K fixed augmented copies per image, drawn once, like an
offline augmentation that writes K copies of the data set).

Memory: the features are written level by level into storage allocated once (no second
copy while they are gathered). Up to ``train.feature_cache_mb`` they live in memory;
beyond it each item's features go to a file on disk (in the run folder, deleted when the
dataset is) and are read back one item at a time, so the process holds one batch of them:
plain reads rather than a memory map, whose touched pages would count in the process's
resident memory. Stored as ``float32`` (the default) the numbers are exactly those of the
in-memory cache; ``bfloat16`` halves both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from medtl.configuration.loading import Config
from medtl.data.dataset import SampleCache
from medtl.data.pipeline import loader_for, make_loader
from medtl.data.transforms import apply_augment, build_augment, to_float
from medtl.models.build import Net
from medtl.utils.errors import MedtlError

log = logging.getLogger("medtl")


def cache_reason(cfg: Config) -> str | None:
    """Why the feature cache cannot be used for ``cfg`` (None when it can)."""
    if not cfg.train.feature_cache or cfg.model.strategy != "frozen":
        return "only for model.strategy=frozen with train.feature_cache=true"
    if cfg.data.augment != "none" and cfg.data.augment_copies == 0:
        return (
            f"data.augment={cfg.data.augment} draws new augmentations every epoch; "
            "set data.augment=none or data.augment_copies=K to cache encoder features"
        )
    return None


#: ``train.feature_cache_dtype`` -> the dtype features are stored in (computed in float32;
#: bfloat16 halves the cache, e.g. VGG16-BN at 256 px: 32 -> 16 MB per image).
CACHE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


#: images encoded at once hold at most this many bytes of features (and at most 16 images)
ENCODE_BYTES = 256 * 2**20


def cache_dtype(cfg: Config) -> torch.dtype:
    """The dtype ``train.feature_cache_dtype`` stores features in."""
    return CACHE_DTYPES[cfg.train.feature_cache_dtype]


def feature_bytes(net: Net, size: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the cached encoder features of one image at ``size`` stored as ``dtype``
    (measured on one input)."""
    with torch.inference_mode():
        feats = net.encoder(net.normalise(torch.zeros(1, 3, size, size)))
    return sum(f.numel() for f in feats) * dtype.itemsize


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class FeatureFile:
    """Encoder features of ``n`` items in a file under ``folder``: item ``j``'s levels,
    flattened and concatenated as ``dtype``, at byte ``j * item_bytes``. The file is deleted
    when this object is (or at exit); read-only copies sent to DataLoader workers keep it."""

    def __init__(self, folder: Path, n: int, shapes: list[tuple[int, ...]], dtype: torch.dtype):
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="features-", suffix=".bin", dir=folder)
        os.close(fd)
        self.path, self.shapes, self.dtype = Path(name), shapes, dtype
        self.numels = [int(torch.Size(s).numel()) for s in shapes]
        self.item_bytes = sum(self.numels) * dtype.itemsize
        with self.path.open("r+b") as f:
            f.truncate(n * self.item_bytes)
        self._cleanup = weakref.finalize(self, _unlink, self.path)

    def write(self, start: int, feats: list[torch.Tensor]) -> None:
        """Items ``start..`` from one batch of levels (float32, computed by the encoder)."""
        with self.path.open("r+b") as out:
            out.seek(start * self.item_bytes)
            for j in range(len(feats[0])):  # item by item, level by level: no batch copy
                for level in feats:
                    part = level[j].to(self.dtype).contiguous()
                    out.write(part.view(torch.uint8).numpy())

    def read(self, j: int) -> tuple[torch.Tensor, ...]:
        """Item ``j``'s levels as float32 tensors."""
        buf = bytearray(self.item_bytes)
        with self.path.open("rb") as f:
            f.seek(j * self.item_bytes)
            if f.readinto(buf) != self.item_bytes:
                raise MedtlError(
                    f"{self.path}: the cached encoder features of item {j} are cut short "
                    "(the file changed during training); train again"
                )
        flat = torch.frombuffer(buf, dtype=self.dtype)
        parts = flat.split(self.numels)
        return tuple(p.view(s).float() for p, s in zip(parts, self.shapes, strict=True))

    def close(self) -> None:
        """Delete the file now (the original object only; a worker's copy has nothing to do)."""
        cleanup = self.__dict__.get("_cleanup")
        if cleanup is not None:
            cleanup()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_cleanup"}


class FeatureDataset(TorchDataset):
    """Items ``(features tuple, mask, label, row)`` from precomputed encoder features.

    Features are stored as ``dtype`` and returned as float32 (the decoder trains in float32):
    in memory (``features``: one tensor per encoder level), or, with ``spill`` (a folder),
    in a :class:`FeatureFile` there (``features`` empty).

    ``copies`` entries per source row: copy 0 is the image itself, copies 1..K fixed
    augmentations (training only). Padding indices (>= len) follow CachedDataset's rule.
    """

    def __init__(
        self,
        net: Net,
        cache: SampleCache,
        indices: Sequence[int],
        labels: Sequence[int] | None,
        augment: str = "none",
        copies: int = 0,
        batch: int = 16,
        dtype: torch.dtype = torch.float32,
        spill: Path | None = None,
    ):
        self.rows: list[int] = []
        images, masks = [], []
        aug = build_augment(augment) if copies else None
        for row in indices:
            for k in range(1 + copies):
                image = cache.images[row]
                mask = cache.masks[row] if cache.masks is not None else None
                if k > 0:
                    image, mask = apply_augment(aug, image, mask)
                images.append(image)
                masks.append(
                    mask
                    if mask is not None
                    else torch.zeros((1, *image.shape[1:]), dtype=torch.uint8)
                )
                self.rows.append(row)
        self.masks = torch.stack(masks).float() if masks else torch.zeros(0)
        self.labels = labels
        self.features: list[torch.Tensor] = []
        self.file: FeatureFile | None = None
        net_mode = net.training
        net.eval()
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                x = to_float(torch.stack(images[start : start + batch]))
                self._store(start, net.encoder(net.normalise(x)), dtype, spill)
        net.train(net_mode)

    def _store(
        self, start: int, feats: list[torch.Tensor], dtype: torch.dtype, spill: Path | None
    ) -> None:
        """Write one batch of levels at item ``start``; the storage is made at the first."""
        n = len(self.rows)
        if start == 0:
            shapes = [tuple(f.shape[1:]) for f in feats]
            if spill is not None:
                self.file = FeatureFile(spill, n, shapes, dtype)
            else:
                self.features = [torch.empty((n, *s), dtype=dtype) for s in shapes]
        if self.file is not None:
            self.file.write(start, feats)
            return
        for level, f in zip(self.features, feats, strict=True):
            level[start : start + len(f)] = f

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """One item's shape at each encoder level."""
        if self.file is not None:
            return self.file.shapes
        return [tuple(f.shape[1:]) for f in self.features]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        pad = i >= len(self.rows)
        j = i - len(self.rows) if pad else i
        row = self.rows[j]
        label = self.labels[row] if self.labels is not None else -1
        if self.file is not None:
            feats = self.file.read(j)
        else:
            feats = tuple(f[j].float() for f in self.features)
        return feats, self.masks[j], label, -1 if pad else row


@contextlib.contextmanager
def features_released(*loaders: Any) -> Iterator[None]:
    """Delete the loaders' feature files on the way out (the fit is over; an error too)."""
    try:
        yield
    finally:
        for loader in loaders:
            file = getattr(getattr(loader, "dataset", None), "file", None)
            if isinstance(file, FeatureFile):
                file.close()


def spill_folder(cfg: Config, net: Net, n_items: int, folder: Path | None) -> Path | None:
    """Where ``n_items`` items' encoder features go: None (memory) when they fit
    ``train.feature_cache_mb``, else ``folder`` (the run folder; None: the system's temp
    folder), where a file holds them."""
    need_mb = feature_bytes(net, cfg.data.image_size, cache_dtype(cfg)) * n_items / 2**20
    if need_mb <= cfg.train.feature_cache_mb:
        return None
    return folder if folder is not None else Path(tempfile.gettempdir())


def feature_loader(
    cfg: Config, task: Any, data: Any, indices: list[int], train: bool, spill: Path | None = None
) -> torch.utils.data.DataLoader:
    """A loader over the frozen encoder's features of ``indices``, computed now, once
    (training: ``1 + data.augment_copies`` fixed copies per image), in memory or, with
    ``spill`` (:func:`spill_folder`), in a file there."""
    dtype = cache_dtype(cfg)
    augment, copies = (cfg.data.augment, cfg.data.augment_copies) if train else ("none", 0)
    per_item = feature_bytes(task.net, cfg.data.image_size)  # float32, as computed
    batch = max(1, min(16, ENCODE_BYTES // per_item))
    ds = FeatureDataset(
        task.net, data.cache, indices, data.labels, augment, copies, batch, dtype, spill
    )
    return loader_for(ds, cfg, train=train)


def train_val_loaders(
    cfg: Config,
    task: Any,
    data: Any,
    train_idx: list[int],
    val_idx: list[int],
    folder: Path | None = None,
):
    """Train/val loaders over cached images, or over cached encoder features (frozen): in
    memory up to ``train.feature_cache_mb``, beyond it in a file in ``folder`` (the run's)."""
    reason = cache_reason(cfg)
    n_items = len(train_idx) * (1 + cfg.data.augment_copies) + len(val_idx)
    if reason is None:
        need_mb = feature_bytes(task.net, cfg.data.image_size, cache_dtype(cfg)) * n_items / 2**20
        if need_mb > cfg.data.in_memory_limit_mb:
            reason = f"encoder features need {need_mb:.0f} MB > data.in_memory_limit_mb={cfg.data.in_memory_limit_mb}"
    if reason is not None:
        if cfg.model.strategy == "frozen":
            log.info(f"feature cache off: {reason}")
        return (
            make_loader(data, train_idx, cfg, train=True),
            make_loader(data, val_idx, cfg, train=False),
        )
    t0 = time.perf_counter()
    spill = spill_folder(cfg, task.net, n_items, folder)
    train_loader = feature_loader(cfg, task, data, train_idx, True, spill)
    val_loader = feature_loader(cfg, task, data, val_idx, False, spill)
    where = (
        f"on disk in {spill} (train.feature_cache_mb={cfg.train.feature_cache_mb} MB < "
        f"{need_mb:.0f} MB)"
        if spill is not None
        else f"in memory ({need_mb:.0f} MB)"
    )
    log.info(
        f"feature cache: frozen encoder features of {len(train_loader.dataset)} training items "
        f"({1 + cfg.data.augment_copies} per image) and {len(val_loader.dataset)} validation "
        f"images computed once in {time.perf_counter() - t0:.1f}s, stored as "
        f"{cfg.train.feature_cache_dtype} {where}"
    )
    return train_loader, val_loader
