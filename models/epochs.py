"""Which rows each Horovod rank reads in each epoch: every training row exactly once, every rank the same steps.

Petastorm's own sharding (``row group index % shard_count``) gives ranks unequal rows when the row-group count does
not divide by the rank count, and ranks that run unequal steps hang in Horovod's allreduce (Horovod #708). Instead
the driver reads each file's row count from its Parquet footer once, and every rank computes the same plan per
epoch from (files, seed, epoch):

1. shuffle the files with a generator seeded by (seed, epoch);
2. deal them out greedily, each to the rank with the fewest rows so far (ties to the lowest rank);
3. every rank runs ``steps = max over ranks of ceil(rows / batch_size)`` steps; a rank with fewer rows ends with
   padding batches whose sample weight is 0, so they add nothing to the loss, its gradient or the metrics.

A file is the unit of assignment: the feature table writes each file as one row group (``pipelines.layout``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DataFile:
    path: str
    rows: int


@dataclass(frozen=True)
class RankPlan:
    files: tuple[DataFile, ...]
    steps: int  # the same on every rank

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


class PlanError(ValueError):
    """The files cannot give every rank data (fewer non-empty files than ranks)."""


def plan_epoch(files: tuple[DataFile, ...], size: int, batch_size: int, epoch: int, seed: int,
               require_all: bool = True) -> list[RankPlan]:
    """The plan of every rank (index = rank) for ``epoch``; ``require_all``: fail unless every rank gets a file."""
    nonempty = [f for f in files if f.rows > 0]
    if require_all and len(nonempty) < size:
        raise PlanError(
            f"{len(nonempty)} non-empty training files for {size} workers: every worker needs at least one "
            "(featurize lays out 4 per worker of train.num_proc; re-run featurize with this num_proc, or lower it)"
        )
    order = np.random.default_rng([seed, epoch]).permutation(len(nonempty))
    assigned: list[list[DataFile]] = [[] for _ in range(size)]
    rows = [0] * size
    for i in order:
        rank = min(range(size), key=lambda r: (rows[r], r))
        assigned[rank].append(nonempty[i])
        rows[rank] += nonempty[i].rows
    steps = max(math.ceil(n / batch_size) for n in rows)  # 0 only for no rows at all
    return [RankPlan(tuple(a), steps) for a in assigned]


def steps_per_epoch(files: tuple[DataFile, ...], size: int, batch_size: int, epochs: int, seed: int) -> int:
    """Steps every rank runs in every epoch: the most any epoch's plan needs (Keras wants one number; an epoch
    that deals its files more evenly pads one more weight-0 batch at most)."""
    return max(plan_epoch(files, size, batch_size, e, seed)[0].steps for e in range(epochs))
