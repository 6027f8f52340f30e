"""Deterministic train / validation / test assignment by hashing a key.

Unlike ``DataFrame.randomSplit``, the split of a row depends only on its key (or, with no key, on all its
values) and the seed: it is the same across reruns, partition counts and cluster sizes.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dlpipe.features.errors import FeatureError

BUCKETS = 1_000_000


def split_bucket(key: str | None, columns: list[str], seed: int) -> Column:
    """A bucket in [0, BUCKETS) from the 64-bit hash of the key column, or of every column when key is None."""
    hashed = F.xxhash64(F.lit(seed), F.col(key)) if key else F.xxhash64(F.lit(seed), *[F.col(c) for c in columns])
    return F.pmod(hashed, F.lit(BUCKETS))


def assign_split(df: DataFrame, key: str | None, train: float, validation: float, seed: int, name: str = "split") -> DataFrame:
    """``df`` plus a string column ``name``: 'train', 'validation' or 'test' by the given fractions."""
    if key is not None and key not in df.columns:
        raise FeatureError(f"split key column {key!r} is not in the input (columns: {', '.join(df.columns)})")
    bucket = split_bucket(key, df.columns, seed)
    train_end = int(round(train * BUCKETS))
    validation_end = int(round((train + validation) * BUCKETS))
    split = F.when(bucket < train_end, "train").when(bucket < validation_end, "validation").otherwise("test")
    return df.withColumn(name, split)
