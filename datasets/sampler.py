"""DefaultSampler: per-epoch reshuffling, optional distributed sharding, and a seed per sample."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from utils.dist import get_rank, get_world_size
from utils.registry import DATA_SAMPLERS


def shared_random_seed() -> int:
    """A random seed, identical on all ranks (broadcast from rank 0 when distributed)."""
    seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    if get_world_size() > 1:
        t = torch.tensor(seed, dtype=torch.int64,
                         device='cuda' if dist.get_backend() == 'nccl' else 'cpu')
        dist.broadcast(t, src=0)
        seed = int(t.item())
    return seed


@DATA_SAMPLERS.register_module()
class DefaultSampler(Sampler):
    """Yield ``(index, sample_seed)`` pairs for this rank (mmengine ``DefaultSampler`` order).

    Args:
        dataset: anything with ``len``.
        shuffle: a new permutation every epoch (``torch.randperm`` seeded with seed + epoch).
        seed: shared by all ranks; ``None`` draws one (broadcast when distributed).
        round_up: pad by repeating indices so every rank gets ``ceil(len / world)`` samples.
        rank, world_size: default to the torch.distributed group (or 0, 1).

    ``sample_seed`` is fixed by (seed, epoch, position in the epoch): datasets seed each sample's
    augmentations with it, so a run is reproducible whatever the number of workers, and
    augmentations differ between samples, workers and epochs. Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None, round_up: bool = True,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = shared_random_seed() if seed is None else int(seed)
        self.round_up = round_up
        self.epoch = 0
        n = len(dataset)
        if round_up:
            self.num_samples = math.ceil(n / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = max(0, math.ceil((n - self.rank) / self.world_size))
            self.total_size = n

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation and sample seeds of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        if self.round_up and n:
            indices = (indices * (self.total_size // n + 1))[:self.total_size]
        seeds = np.random.default_rng([self.seed, self.epoch]).integers(0, 2**63 - 1, size=len(indices))
        for pos in range(self.rank, len(indices), self.world_size):
            yield indices[pos], int(seeds[pos])

    def __len__(self) -> int:
        return self.num_samples
