"""Counting a drift profile (``features.profile``) from featurized rows, as a scorer receives them.

``infer`` profiles the rows it scores in the job that scores them, and featurize the training split the same way,
so both sides go through the same arithmetic. A ``Tally`` reads what the scorer already reads (the dense features
packed in one list and the categorical ids: ``features.apply.scorer_input``) and one bit mask per row of which
values were missing (``missing_words``), the only column Spark computes for it: a filled value cannot be told from
a present one by its feature alone.

- A numeric feature's bins are found in feature space: each training cut is carried there once, by the artifact's
  own Spark expression (``feature_space``), so a value equal to a cut lands where the raw value would. A scalar
  feature is its own key; a piecewise-linear one's key is its bin plus the share of the bin (``NumericSpace``). The
  sums between cuts are of the value undone from its feature: a clipped value counts at its clip bound, on both
  sides (docs/drift.md).
- A categorical feature's id (or one-hot slot) names its vocabulary value; id 0 is outside the vocabulary unless
  the value was missing.

Rows are drawn into a large input's sample in the Python worker (``Tally.add``), per batch with a generator seeded
by the task's partition, so Spark's generated code has no branch for them: with one, even a rarely taken branch
that only packed a bit mask cost a 10M-row scoring job as much as passing every sampled row's raw values
(docs/benchmarks.md). Tallies add up: each task keeps one and Spark merges them as an accumulator, once per
successful task.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.features.apply import apply_features, numeric_feature, scorer_input
from dlpipe.features.expressions import categorical_value, numeric_value
from dlpipe.features.fitted import FittedFeatures
from dlpipe.features.profile import PROFILE_SEED, CategoryCounts, NumericCounts, Profile, ProfileBins
from dlpipe.features.schema import DENSE_INPUT
from dlpipe.features.spec import FeatureSpec

CHUNK = 20_000  # sampled rows counted at once (a 0.2% sample has 20 rows in a batch of 10,000)
WORD = 64       # missing flags per mask column


def missing_word(i: int) -> str:
    return f"__profile_missing{i}"


def missing_words(spec: FeatureSpec) -> list[Column]:
    """Per row, which of its numeric and categorical values are missing, a bit each (numeric features first, in
    spec order), ``WORD`` to a long column."""
    flags = [*(numeric_value(f).isNull() for f in spec.numeric),
             *(categorical_value(f.column).isNull() for f in spec.categorical)]
    words = []
    for start in range(0, len(flags), WORD):
        word = F.lit(0).cast("long")
        for bit, flag in enumerate(flags[start:start + WORD]):
            word = word.bitwiseOR(F.shiftleft(flag.cast("long"), bit))
        words.append(word.alias(missing_word(start // WORD)))
    return words


def word_names(spec: FeatureSpec) -> tuple[str, ...]:
    count = len(spec.numeric) + len(spec.categorical)
    return tuple(missing_word(i) for i in range((count + WORD - 1) // WORD))


@dataclass(frozen=True)
class NumericSpace:
    """Where a numeric feature sits in the packed dense row, and how its value is read back."""

    start: int
    width: int
    keys: tuple[float, ...]        # per training cut, its key (``key``), ascending
    center: float = 0.0            # a scalar feature: x = center + feature * scale (then expm1 for ``log``)
    scale: float = 1.0
    log: bool = False
    edges: tuple[float, ...] = ()  # a piecewise-linear feature: its bin edges

    def _bins(self, v: np.ndarray) -> np.ndarray:
        """A piecewise-linear row's bin: its slots before the last at 1 (those are full)."""
        return (v[:, :self.width - 1] >= 1.0).sum(axis=1)

    def key(self, v: np.ndarray) -> np.ndarray:
        """An ascending key of rows of the feature (``v``: rows x width, float32): the scalar itself, or a
        piecewise-linear feature's bin plus its slot there (exact in float64, the same for equal vectors)."""
        if not self.edges:
            return v[:, 0].astype(np.float64)
        t = self._bins(v)
        return t + v[np.arange(len(v)), t].astype(np.float64)

    def value(self, v: np.ndarray) -> np.ndarray:
        """The values the features were made from (to float32's precision; a clipped value at its bound)."""
        if self.edges:
            edges = np.array(self.edges)
            t = self._bins(v)
            return edges[t] + v[np.arange(len(v)), t] * np.diff(edges)[t]
        x = self.center + v[:, 0].astype(np.float64) * self.scale
        return np.expm1(x) if self.log else x


@dataclass(frozen=True)
class CategorySpace:
    """Where a categorical feature's id is (an index column, or one-hot slots in the packed dense row), and the
    bucket of each id (``TRACKED`` values, the rest of the vocabulary, outside it)."""

    index: str | None
    start: int
    width: int
    buckets: tuple[int, ...]

    def ids(self, batch, dense: np.ndarray | None) -> np.ndarray:
        if self.index is not None:
            return batch.column(self.index).to_numpy(zero_copy_only=False)
        return np.argmax(dense[:, self.start:self.start + self.width], axis=1)


@dataclass(frozen=True)
class FeatureSpace:
    numeric: dict[str, NumericSpace]
    categorical: dict[str, CategorySpace]
    width: int                 # of the packed dense row
    words: tuple[str, ...]     # the missing-flag columns

    @property
    def index(self) -> tuple[str, ...]:
        """The index columns a tally reads."""
        return tuple(s.index for s in self.categorical.values() if s.index is not None)


def feature_space(spark: SparkSession, fitted: FittedFeatures, bins: ProfileBins) -> FeatureSpace:
    """The training cuts carried into feature space by ``fitted``'s own expressions (one small Spark job), and
    where each feature sits in the scorer's input."""
    spec, schema = fitted.spec, fitted.schema
    offsets, at = {}, 0
    for c in schema.dense:
        offsets[c.name] = at
        at += c.width
    widths = {c.name: c.width for c in schema.dense}
    numeric = {}
    if spec.numeric:
        cuts = {f.column: bins.numeric[f.column].cuts for f in spec.numeric}
        longest = max(len(c) for c in cuts.values())
        rows = [tuple(float(c[min(i, len(c) - 1)]) for c in cuts.values()) for i in range(longest)]
        table = spark.createDataFrame(rows, T.StructType([T.StructField(c, T.DoubleType()) for c in cuts]))
        carried = table.select(*(numeric_feature(f, fitted.numeric[f.column]).alias(f"cut{j}")
                                 for j, f in enumerate(spec.numeric))).collect()
        for j, f in enumerate(spec.numeric):
            stats = fitted.numeric[f.column]
            space = NumericSpace(offsets[f.output_column], widths[f.output_column], (),
                                 stats.center, stats.scale, f.transform == "log",
                                 tuple(stats.edges) if f.transform == "ple" else ())
            n = len(cuts[f.column])
            vectors = np.array([row[j] if space.edges else [row[j]] for row in carried[:n]], dtype=np.float32)
            keys = space.key(vectors)
            if stats.clip_bounds is not None:  # every value is below a cut above the upper bound, at the bound
                keys[np.array(cuts[f.column]) > stats.clip_bounds[1]] = np.inf
            numeric[f.column] = dataclasses.replace(space, keys=tuple(float(k) for k in keys))
    categorical = {}
    for f in spec.categorical:
        vocabulary, b = fitted.vocabularies[f.column].values, bins.categorical[f.column]
        rank = {v: min(i, len(b.tracked)) for i, v in enumerate(b.vocabulary)}
        outside = len(b.tracked) + 1
        buckets = (outside, *(rank.get(v, outside) for v in vocabulary))
        if f.encoding == "onehot":
            categorical[f.column] = CategorySpace(None, offsets[f.output_column], widths[f.output_column], buckets)
        else:
            categorical[f.column] = CategorySpace(f.output_column, 0, 0, buckets)
    return FeatureSpace(numeric, categorical, schema.dense_width, word_names(spec))


class Tally:
    """Running counts of featurized rows over ``ProfileBins`` (one per Spark task, merged with ``+``): per numeric
    column the present values and the sum of their values per bin between cuts, per categorical column the
    values per bucket, and the missing values of each. ``fraction``: the share of rows drawn into the sample."""

    def __init__(self, space: FeatureSpace, bins: ProfileBins, fraction: float = 1.0) -> None:
        self.space, self.bins, self.fraction = space, bins, fraction
        self.rows = 0
        self.counts = {c: np.zeros(len(s.keys) + 1, dtype=np.int64) for c, s in space.numeric.items()}
        self.sums = {c: np.zeros(len(s.keys) + 1) for c, s in space.numeric.items()}
        self.numeric_missing = {c: 0 for c in space.numeric}
        self.buckets = {c: np.zeros(len(bins.categorical[c].tracked) + 2, dtype=np.int64) for c in space.categorical}
        self.categorical_missing = {c: 0 for c in space.categorical}
        self._columns = (*((DENSE_INPUT,) if space.width else ()), *space.index, *space.words)
        self._draws = None  # the sample's generator, made where the batches are counted
        self._waiting, self._waiting_rows = [], 0

    def add(self, batch) -> None:
        """Count the sampled rows of an Arrow record batch of the scorer's input and the ``missing_words``. A
        sample's rows are few per batch: they wait until ``CHUNK`` of them are counted at once (``flush``)."""
        import pyarrow as pa

        if batch.num_rows == 0:
            return
        batch = pa.RecordBatch.from_arrays([batch.column(c) for c in self._columns], names=list(self._columns))
        if self.fraction < 1.0:
            if self._draws is None:
                from pyspark import TaskContext

                task = TaskContext.get()
                self._draws = np.random.default_rng([PROFILE_SEED, task.partitionId() if task else 0])
            batch = batch.filter(pa.array(self._draws.random(batch.num_rows) < self.fraction))
        if batch.num_rows:
            self._waiting.append(batch)
            self._waiting_rows += batch.num_rows
        if self._waiting_rows >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Count the rows ``add`` keeps waiting."""
        import pyarrow as pa

        if not self._waiting:
            return
        batch = pa.Table.from_batches(self._waiting).combine_chunks().to_batches()[0]
        self._waiting, self._waiting_rows = [], 0
        n = batch.num_rows
        self.rows += n
        space = self.space
        dense = None
        if space.width:
            flat = batch.column(DENSE_INPUT).flatten().to_numpy(zero_copy_only=False)
            dense = flat.reshape(n, space.width)
        words = [batch.column(w).to_numpy(zero_copy_only=False).view(np.uint64) for w in space.words]
        shifts = np.arange(WORD, dtype=np.uint64)
        missing = (np.concatenate([(w[:, None] >> shifts) & np.uint64(1) for w in words], axis=1).astype(bool)
                   if words else np.zeros((n, 0), dtype=bool))
        for j, (column, s) in enumerate(space.numeric.items()):
            present = ~missing[:, j]
            self.numeric_missing[column] += int(n - present.sum())
            v = dense[present, s.start:s.start + s.width]
            at = np.searchsorted(np.array(s.keys), s.key(v), side="right")  # cuts at or below each value
            self.counts[column] += np.bincount(at, minlength=len(s.keys) + 1)
            self.sums[column] += np.bincount(at, weights=s.value(v), minlength=len(s.keys) + 1)
        for j, (column, s) in enumerate(space.categorical.items(), start=len(space.numeric)):
            present = ~missing[:, j]
            self.categorical_missing[column] += int(n - present.sum())
            ids = s.ids(batch, dense)[present]
            buckets = np.array(s.buckets)[ids]
            self.buckets[column] += np.bincount(buckets, minlength=len(self.buckets[column]))

    def __add__(self, other: "Tally") -> "Tally":
        self.flush()
        other.flush()
        out = Tally(self.space, self.bins, self.fraction)
        out.rows = self.rows + other.rows
        for name in ("counts", "sums", "numeric_missing", "buckets", "categorical_missing"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(out, name, {c: mine[c] + theirs[c] for c in mine})
        return out

    def __getstate__(self) -> dict:
        self.flush()
        return {**self.__dict__, "_draws": None}

    def profile(self) -> Profile:
        self.flush()
        numeric = {}
        for column in self.space.numeric:
            cuts = np.array(self.bins.numeric[column].cuts)
            counts, sums = self.counts[column], self.sums[column]
            below = np.cumsum(counts)[:len(cuts)]                 # values < cut k: those in bins 0..k
            summed = np.cumsum(sums)[:len(cuts)]
            last = len(cuts)                                      # the bin at or above the training maximum
            over = float(sums[last] - counts[last] * self.bins.numeric[column].high)
            numeric[column] = NumericCounts(self.numeric_missing[column], tuple(int(b) for b in below),
                                            tuple(float(v) for v in cuts * below - summed),
                                            int(counts.sum()), max(over, 0.0))
        categorical = {}
        for column, buckets in self.buckets.items():
            tracked = len(buckets) - 2
            categorical[column] = CategoryCounts(self.categorical_missing[column],
                                                 tuple(int(b) for b in buckets[:tracked]), int(buckets[tracked]),
                                                 int(buckets[tracked + 1]))
        return Profile(self.rows, numeric, categorical)


def accumulator(context, space: FeatureSpace, bins: ProfileBins, fraction: float = 1.0):
    """A Spark accumulator of tallies: each task's tally is added on the driver, once per successful task of an
    action's last stage (a failed or retried attempt adds nothing)."""
    from pyspark.accumulators import AccumulatorParam

    class Adding(AccumulatorParam):
        def zero(self, value: Tally) -> Tally:
            return Tally(space, bins, fraction)

        def addInPlace(self, a: Tally, b: Tally) -> Tally:
            return a + b

    return context.accumulator(Tally(space, bins, fraction), Adding())


def with_missing_words(raw: DataFrame, fitted: FittedFeatures, **apply) -> DataFrame:
    """``apply_features`` of ``raw`` with the ``missing_words`` beside the features."""
    return apply_features(raw, fitted, extra=(*apply.pop("extra", ()), *missing_words(fitted.spec)), **apply)


def tally_rows(df: DataFrame, fitted: FittedFeatures, bins: ProfileBins) -> Profile:
    """The profile of the rows of ``df`` (featurize: the training split or a sample of it), counted as ``infer``
    counts the rows it scores: featurized by ``fitted``, in Spark's Python workers, merged through an
    ``accumulator``."""
    space = feature_space(df.sparkSession, fitted, bins)
    total = accumulator(df.sparkSession.sparkContext, space, bins)
    rows = scorer_input(with_missing_words(df, fitted), fitted.schema, space.words)
    rows.mapInArrow(counting(space, bins, total), "counted int").write.format("noop").mode("overwrite").save()
    return total.value.profile()


def counting(space: FeatureSpace, bins: ProfileBins, total, fraction: float = 1.0):
    """A ``mapInArrow`` function that counts its batches (a ``fraction`` of their rows) into the accumulator
    ``total`` and yields no rows."""
    def count(batches):
        tally = Tally(space, bins, fraction)
        for batch in batches:
            tally.add(batch)
        total.add(tally)
        return iter(())
    return count
