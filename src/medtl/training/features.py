"""Frozen-encoder feature caching: encode every training image once, train only the heads.

With ``model.strategy=frozen`` the encoder is a fixed function, so its features can be
computed once (in eval mode, exactly what the frozen encoder computes during training) and
each step only runs the decoder and heads. Random per-epoch augmentation would need a new
encoding every epoch, so the cache is used when ``data.augment=none`` or with
``data.augment_copies=K`` (K fixed augmented copies per image, drawn once, like an
offline augmentation that writes K copies of the data set).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from medtl.configuration.loading import Config
from medtl.data.dataset import SampleCache
from medtl.data.pipeline import loader_for, make_loader
from medtl.data.transforms import apply_augment, build_augment, to_float
from medtl.models.build import Net

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


def cache_dtype(cfg: Config) -> torch.dtype:
    """The dtype ``train.feature_cache_dtype`` stores features in."""
    return CACHE_DTYPES[cfg.train.feature_cache_dtype]


def feature_bytes(net: Net, size: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the cached encoder features of one image at ``size`` stored as ``dtype``
    (measured on one input)."""
    with torch.inference_mode():
        feats = net.encoder(net.normalise(torch.zeros(1, 3, size, size)))
    return sum(f.numel() for f in feats) * dtype.itemsize


class FeatureDataset(TorchDataset):
    """Items ``(features tuple, mask, label, row)`` from precomputed encoder features.

    Features are stored as ``dtype`` and returned as float32 (the decoder trains in float32).

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
        self.masks = torch.stack(masks).float()
        self.labels = labels
        net_mode = net.training
        net.eval()
        chunks: list[list[torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                x = to_float(torch.stack(images[start : start + batch]))
                feats = net.encoder(net.normalise(x))
                # .to() copies out of inference mode's buffers; clone when it would not
                chunks.append([f.to(dtype) if f.dtype != dtype else f.clone() for f in feats])
        net.train(net_mode)
        self.features = (
            [torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))] if chunks else []
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        pad = i >= len(self.rows)
        j = i - len(self.rows) if pad else i
        row = self.rows[j]
        label = self.labels[row] if self.labels is not None else -1
        return tuple(f[j].float() for f in self.features), self.masks[j], label, -1 if pad else row


def feature_loader(
    cfg: Config, task: Any, data: Any, indices: list[int], train: bool
) -> torch.utils.data.DataLoader:
    """A loader over the frozen encoder's features of ``indices``, computed now, once
    (training: ``1 + data.augment_copies`` fixed copies per image)."""
    dtype = cache_dtype(cfg)
    if train:
        ds = FeatureDataset(
            task.net,
            data.cache,
            indices,
            data.labels,
            cfg.data.augment,
            cfg.data.augment_copies,
            dtype=dtype,
        )
    else:
        ds = FeatureDataset(task.net, data.cache, indices, data.labels, dtype=dtype)
    return loader_for(ds, cfg, train=train)


def train_val_loaders(cfg: Config, task: Any, data: Any, train_idx: list[int], val_idx: list[int]):
    """Train/val loaders over cached images, or over cached encoder features (frozen)."""
    reason = cache_reason(cfg)
    if reason is None:
        copies = cfg.data.augment_copies
        need_mb = (
            feature_bytes(task.net, cfg.data.image_size, cache_dtype(cfg))
            * (len(train_idx) * (1 + copies) + len(val_idx))
            / 2**20
        )
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
    train_loader = feature_loader(cfg, task, data, train_idx, train=True)
    val_loader = feature_loader(cfg, task, data, val_idx, train=False)
    log.info(
        f"feature cache: frozen encoder features of {len(train_loader.dataset)} training items "
        f"({1 + cfg.data.augment_copies} per image) and {len(val_loader.dataset)} validation "
        f"images computed once in {time.perf_counter() - t0:.1f}s, stored as "
        f"{cfg.train.feature_cache_dtype}"
    )
    return train_loader, val_loader
