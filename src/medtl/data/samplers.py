"""Samplers that shard over distributed ranks themselves (Lightning's are switched off).

Rank and world size are read when an epoch starts (``__iter__``), because loaders are built
before Lightning launches the other processes. Training shards a seeded permutation that
depends only on (seed, epoch), truncated so every rank gets the same number of samples
(nothing duplicated). Evaluation gives every sample to exactly one rank and pads the
shorter ranks with marked padding items (index >= n), which the dataset flags and the
metrics skip, so distributed metrics equal single-process ones exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSeededSampler(Sampler[int]):
    """Shuffled training order that depends only on (seed, epoch), sharded over ranks.

    Lightning calls ``set_epoch`` at every epoch start, so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rank, world = rank_and_world()
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        usable = (self.n // world) * world
        return iter(order[:usable][rank::world])

    def __len__(self) -> int:
        return self.n // rank_and_world()[1]


class ShardedEvalSampler(Sampler[int]):
    """Every index on exactly one rank, in order; padding indices ``n + k`` mark repeats."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self) -> Iterator[int]:
        rank, world = rank_and_world()
        total = math.ceil(self.n / world) * world
        return iter(range(rank, total, world))

    def __len__(self) -> int:
        return math.ceil(self.n / rank_and_world()[1])
