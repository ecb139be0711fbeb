"""Frozen-encoder feature caching: encode every training image once, train only the heads.

With ``model.strategy=frozen`` the encoder is a fixed function, so its features can be
computed once (in eval mode, exactly what the frozen encoder computes during training) and
each step only runs the decoder and heads. Random per-epoch augmentation would need a new
encoding every epoch, so the cache is used when ``data.augment=none`` or with
``data.augment_copies=K`` (K fixed augmented copies per image, drawn once, like the
offline augmentation of the replaced scripts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset as TorchDataset

from medtl.config import Config
from medtl.data.dataset import SampleCache
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


def feature_bytes(net: Net, size: int) -> int:
    """Bytes of the encoder features of one image at ``size`` (measured on one input)."""
    with torch.inference_mode():
        feats = net.encoder(net.normalise(torch.zeros(1, 3, size, size)))
    return sum(f.numel() * f.element_size() for f in feats)


class FeatureDataset(TorchDataset):
    """Items ``(features tuple, mask, label, row)`` from precomputed encoder features.

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
                chunks.append([f.clone() for f in net.encoder(net.normalise(x))])
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
        return tuple(f[j] for f in self.features), self.masks[j], label, -1 if pad else row
