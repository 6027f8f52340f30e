"""Distribution profiles of a table's feature columns, for drift: the training split's, stored in the feature
artifact, and a scored input's, counted by ``infer`` in the job that scores it (no second pass over the input).

Both are counts over bins that the training split fixes (``ProfileBins``):

- a numeric column: per cut c (the training minimum, deciles and maximum) the present values below it and the
  sum of ``c - x`` over them, and the sum of ``x - max`` over values above the training maximum (with these the
  area between two cumulative distributions is known exactly between cuts);
- a categorical column: each of the ``TRACKED`` most frequent vocabulary values, the rest of the vocabulary, and the
  values outside it (never seen in training, or too rare to get an id);
- every column: its missing values, as ``features.expressions`` reads them (null, NaN, infinite and, for a ``log``
  feature, at most -1; null or empty text), told apart in NumPy.

Spark hands the values (``values``: the numeric ones packed in one list, as Spark reads them) to Python as Arrow
batches, where a ``Tally`` counts them with NumPy and pyarrow: per value a binary search over about 11 cuts, or a
lookup of each distinct value of a batch. The same counts as Spark aggregates (about 660 conditional counts and sums
per row for the demo's 31 columns) took 4x longer than scoring the rows. Tallies add up, so each task keeps one and
Spark merges them as an accumulator. A large input is profiled on a uniform sample of its rows (``with_sample``).

Spark's side is kept to plain reads: a hash marks the sampled rows below the feature joins, and their raw values
are chosen beside the features (``values``); what counts as missing is decided in NumPy. Drift costs a 10M-row
``dlpipe infer`` about 6% with the default 20,000-row sample, about 20% with 200,000 (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dlpipe.features.expressions import LOG_FLOOR
from dlpipe.features.spec import FeatureSpec

DECILES = tuple(i / 10 for i in range(1, 10))  # a numeric column's bins: the training deciles
TRACKED = 20  # a categorical column's most frequent values counted one by one
CHUNK = 20_000  # sampled rows counted at once (a 2% sample has 200 rows in a batch of 10,000)
TRAINING_SAMPLE = 1_000_000  # a larger training split is profiled on a uniform sample of about this many rows
PROFILE_SEED = 0             # hashed with a row's key to draw it into a sample


@dataclass(frozen=True)
class NumericBins:
    edges: tuple[float, ...]  # the distinct training deciles, ascending
    low: float                # the training minimum and maximum
    high: float
    std: float                # the training standard deviation (normalises the Wasserstein distance)

    @property
    def cuts(self) -> tuple[float, ...]:
        """Where the bins meet: the training minimum, the deciles and the maximum (each once)."""
        return tuple(sorted({self.low, *self.edges, self.high}))

    def to_json(self) -> dict:
        return {"edges": list(self.edges), "low": self.low, "high": self.high, "std": self.std}

    @classmethod
    def from_json(cls, data: dict) -> "NumericBins":
        return cls(tuple(float(e) for e in data["edges"]), float(data["low"]), float(data["high"]), float(data["std"]))


@dataclass(frozen=True)
class CategoryBins:
    tracked: tuple[str, ...]     # the most frequent vocabulary values, most frequent first
    vocabulary: tuple[str, ...]  # every value with an id of its own (the missing category left out)


@dataclass(frozen=True)
class ProfileBins:
    numeric: dict[str, NumericBins]
    categorical: dict[str, CategoryBins]


@dataclass(frozen=True)
class NumericCounts:
    missing: int
    below: tuple[int, ...]        # present values below each cut
    shortfall: tuple[float, ...]  # per cut c: the sum of c - x over present values x below it
    present: int
    over: float                   # the sum of x - max over values above the training maximum (the last cut)

    def to_json(self) -> dict:
        return {"missing": self.missing, "below": list(self.below), "shortfall": list(self.shortfall),
                "present": self.present, "over": self.over}

    @classmethod
    def from_json(cls, data: dict) -> "NumericCounts":
        return cls(int(data["missing"]), tuple(int(n) for n in data["below"]),
                   tuple(float(v) for v in data["shortfall"]), int(data["present"]), float(data["over"]))


@dataclass(frozen=True)
class CategoryCounts:
    missing: int
    tracked: tuple[int, ...]  # per tracked value
    rest: int                 # the other vocabulary values
    outside: int              # present values outside the vocabulary

    @property
    def present(self) -> int:
        return sum(self.tracked) + self.rest + self.outside

    def to_json(self) -> dict:
        return {"missing": self.missing, "tracked": list(self.tracked), "rest": self.rest, "outside": self.outside}

    @classmethod
    def from_json(cls, data: dict) -> "CategoryCounts":
        return cls(int(data["missing"]), tuple(int(n) for n in data["tracked"]), int(data["rest"]),
                   int(data["outside"]))


@dataclass(frozen=True)
class Profile:
    rows: int
    numeric: dict[str, NumericCounts]
    categorical: dict[str, CategoryCounts]

    def to_json(self) -> dict:
        return {"rows": self.rows, "numeric": {c: n.to_json() for c, n in self.numeric.items()},
                "categorical": {c: n.to_json() for c, n in self.categorical.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        return cls(int(data["rows"]), {c: NumericCounts.from_json(n) for c, n in data["numeric"].items()},
                   {c: CategoryCounts.from_json(n) for c, n in data["categorical"].items()})


@dataclass(frozen=True)
class TrainingProfile:
    """The training split's profile, kept in the feature artifact: what a scored input is compared with. The
    categorical bins follow from the artifact's vocabularies, so only the numeric ones are stored."""

    numeric_bins: dict[str, NumericBins]
    counts: Profile

    def bins(self, vocabularies: dict) -> ProfileBins:
        """The bins to count a scored input over (``vocabularies``: column -> ``fitted.Vocabulary``)."""
        return ProfileBins(self.numeric_bins, {c: category_bins(v.values) for c, v in vocabularies.items()})

    def to_json(self) -> dict:
        return {"numeric_bins": {c: b.to_json() for c, b in self.numeric_bins.items()}, "counts": self.counts.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "TrainingProfile":
        return cls({c: NumericBins.from_json(b) for c, b in data["numeric_bins"].items()},
                   Profile.from_json(data["counts"]))


def category_bins(vocabulary_values: tuple[str | None, ...]) -> CategoryBins:
    """A categorical column's bins from its vocabulary (most frequent first)."""
    values = tuple(v for v in vocabulary_values if v is not None)
    return CategoryBins(values[:TRACKED], values)


def numeric_bins(deciles: list[float], low: float | None, high: float | None, std: float | None) -> NumericBins:
    """A numeric column's bins from its training deciles, range and deviation (a column without training values
    gets one empty bin)."""
    if low is None or high is None:
        return NumericBins((), 0.0, 0.0, 0.0)
    return NumericBins(tuple(sorted(set(float(d) for d in deciles))), float(low), float(high), float(std or 0.0))


NUMERIC_VALUES = "__profile_numeric"  # the numeric columns' values, in spec order, as one list per row


def category_column(i: int) -> str:
    return f"__profile_category{i}"


SAMPLED = "__profile_sampled"  # whether the row is counted (with its values) or not (values null)


def with_values(df: DataFrame, spec: FeatureSpec, fraction: float = 1.0, key: tuple[str, ...] = ()) -> DataFrame:
    """``df`` with the columns a ``Tally`` reads (``value_names``): ``with_sample`` and then ``values``."""
    return with_sample(df, spec, fraction, key).select("*", *values(spec))


def with_sample(df: DataFrame, spec: FeatureSpec, fraction: float = 1.0, key: tuple[str, ...] = ()) -> DataFrame:
    """``df`` with the column that says whether the row is in the profile's sample (a ``fraction`` of the rows,
    drawn by ``in_sample``)."""
    return df.select("*", (in_sample(spec, fraction, key) if fraction < 1.0 else F.lit(True)).alias(SAMPLED))


def values(spec: FeatureSpec) -> list[Column]:
    """The value columns of a row of ``with_sample``: for a sampled row the numeric values in one list (as
    doubles; missing ones are told apart in the ``Tally``) and each categorical value as text; null for other rows,
    which costs Spark's handoff to Python next to nothing."""
    named = [(NUMERIC_VALUES, F.array(*[F.col(f.column).cast("double") for f in spec.numeric]))] if spec.numeric else []
    named += [(category_column(i), F.col(f.column).cast("string")) for i, f in enumerate(spec.categorical)]
    return [F.when(F.col(SAMPLED), value).alias(name) for name, value in named]


def in_sample(spec: FeatureSpec, fraction: float, key: tuple[str, ...] = ()) -> Column:
    """True for about a ``fraction`` of the rows, by a hash of their ``key`` columns (of their feature values
    without one). Not ``rand()``: with a non-deterministic column below the feature joins, a 1M-row scoring job
    took 6.5 s instead of 4.2 s; and a hash draws the same rows when Spark retries a task."""
    columns = list(key) or [*(f.column for f in spec.numeric), *(f.column for f in spec.categorical)]
    return F.pmod(F.xxhash64(F.lit(PROFILE_SEED), *columns), F.lit(1 << 30)) < F.lit(int(fraction * (1 << 30)))


def value_names(spec: FeatureSpec) -> tuple[str, ...]:
    return (SAMPLED, *([NUMERIC_VALUES] if spec.numeric else []),
            *(category_column(i) for i in range(len(spec.categorical))))


class Tally:
    """Running counts of the value columns over ``ProfileBins`` (one per Spark task, merged with ``+``): per
    numeric column the present values and their sum per bin between cuts, per categorical column the values per
    bucket (tracked values, the rest of the vocabulary, outside it), and the missing values of each."""

    def __init__(self, spec: FeatureSpec, bins: ProfileBins) -> None:
        self.numeric = [f.column for f in spec.numeric]
        self.categorical = [f.column for f in spec.categorical]
        self.bins = bins
        self.rows = 0
        self.counts = [np.zeros(len(bins.numeric[c].cuts) + 1, dtype=np.int64) for c in self.numeric]
        self.sums = [np.zeros(len(bins.numeric[c].cuts) + 1) for c in self.numeric]
        self.numeric_missing = np.zeros(len(self.numeric), dtype=np.int64)
        self.buckets = [np.zeros(len(bins.categorical[c].tracked) + 2, dtype=np.int64) for c in self.categorical]
        self.categorical_missing = np.zeros(len(self.categorical), dtype=np.int64)
        self._cuts = [np.array(bins.numeric[c].cuts) for c in self.numeric]
        # at or below: missing, as numeric_value reads it
        self._floors = [LOG_FLOOR if f.transform == "log" else -np.inf for f in spec.numeric]
        self._names = value_names(spec)
        self._buckets = None  # per categorical column, value -> bucket; made where the batches are counted
        self._waiting, self._waiting_rows = [], 0  # sampled rows not counted yet

    def add(self, batch) -> None:
        """Count the sampled rows of an Arrow record batch holding the ``value_names`` columns (and others). A
        sample's rows are few per batch: they wait until ``CHUNK`` of them are counted at once (``flush``)."""
        import pyarrow as pa

        if batch.num_rows == 0:
            return
        sampled = batch.column(SAMPLED)
        batch = pa.RecordBatch.from_arrays([batch.column(c) for c in self._names], names=self._names)
        if sampled.false_count:
            batch = batch.filter(sampled)
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
        if self.numeric:
            flat = batch.column(NUMERIC_VALUES).flatten().to_numpy(zero_copy_only=False)
            values = np.ascontiguousarray(flat.reshape(n, len(self.numeric)).T)  # a row per column
            for j, cuts in enumerate(self._cuts):
                column = values[j]
                present = column[np.isfinite(column) & (column > self._floors[j])]
                self.numeric_missing[j] += n - len(present)
                at = np.searchsorted(cuts, present, side="right")  # cuts at or below each value
                self.counts[j] += np.bincount(at, minlength=len(cuts) + 1)
                self.sums[j] += np.bincount(at, weights=present, minlength=len(cuts) + 1)
        if self._buckets is None:  # value -> bucket: a tracked value's rank, the rest of the vocabulary
            self._buckets = []
            for c in self.categorical:
                b = self.bins.categorical[c]
                self._buckets.append({v: min(i, len(b.tracked)) for i, v in enumerate(b.vocabulary)})
        for j, buckets in enumerate(self._buckets):
            column = batch.column(category_column(j))
            outside = len(self.buckets[j]) - 1
            encoded = column.dictionary_encode()  # each distinct value of the batch looked up once
            distinct = encoded.dictionary.to_pylist()
            of_value = np.array([buckets.get(v, outside) for v in distinct] + [outside])
            ids = encoded.indices.fill_null(len(of_value) - 1).to_numpy(zero_copy_only=False)
            counted = np.bincount(ids, minlength=len(of_value))
            self.buckets[j] += np.bincount(of_value, weights=counted, minlength=outside + 1).astype(np.int64)
            empty = int(counted[distinct.index("")]) if "" in distinct else 0  # empty text is missing too
            self.categorical_missing[j] += column.null_count + empty

    def __add__(self, other: "Tally") -> "Tally":
        self.flush()
        other.flush()
        out = Tally.__new__(Tally)
        out.__dict__.update(self.__dict__)
        out.rows = self.rows + other.rows
        out.counts = [a + b for a, b in zip(self.counts, other.counts)]
        out.sums = [a + b for a, b in zip(self.sums, other.sums)]
        out.numeric_missing = self.numeric_missing + other.numeric_missing
        out.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        out.categorical_missing = self.categorical_missing + other.categorical_missing
        out._buckets = None
        return out

    def __getstate__(self) -> dict:
        self.flush()
        return {**self.__dict__, "_buckets": None}

    def profile(self) -> Profile:
        self.flush()
        numeric = {}
        for j, column in enumerate(self.numeric):
            cuts = self._cuts[j]
            below = np.cumsum(self.counts[j])[:len(cuts)]         # values < cut k: those in bins 0..k
            summed = np.cumsum(self.sums[j])[:len(cuts)]
            last = len(cuts)                                      # the bin at or above the training maximum
            over = float(self.sums[j][last] - self.counts[j][last] * self.bins.numeric[column].high)
            numeric[column] = NumericCounts(int(self.numeric_missing[j]), tuple(int(b) for b in below),
                                            tuple(float(v) for v in cuts * below - summed),
                                            int(self.counts[j].sum()), max(over, 0.0))
        categorical = {}
        for j, column in enumerate(self.categorical):
            buckets, missing = self.buckets[j], int(self.categorical_missing[j])
            tracked = len(buckets) - 2
            categorical[column] = CategoryCounts(missing, tuple(int(b) for b in buckets[:tracked]),
                                                 int(buckets[tracked]), int(buckets[tracked + 1]) - missing)
        return Profile(self.rows, numeric, categorical)


def accumulator(context, spec: FeatureSpec, bins: ProfileBins):
    """A Spark accumulator of tallies: each task's tally is added on the driver, once per successful task of an
    action's last stage (a failed or retried attempt adds nothing)."""
    from pyspark.accumulators import AccumulatorParam

    class Adding(AccumulatorParam):
        def zero(self, value: Tally) -> Tally:
            return Tally(spec, bins)

        def addInPlace(self, a: Tally, b: Tally) -> Tally:
            return a + b

    return context.accumulator(Tally(spec, bins), Adding())


def tally_rows(df: DataFrame, spec: FeatureSpec, bins: ProfileBins) -> Profile:
    """The profile of the rows of ``df`` (featurize: the training split or a sample of it), counted as ``infer``
    counts: in Spark's Python workers, merged through an ``accumulator``."""
    total = accumulator(df.sparkSession.sparkContext, spec, bins)
    with_values(df, spec).select(*value_names(spec)).mapInArrow(counting(spec, bins, total), "counted int").write.format(
        "noop").mode("overwrite").save()
    return total.value.profile()


def counting(spec: FeatureSpec, bins: ProfileBins, total):
    """A ``mapInArrow`` function that counts its batches into the accumulator ``total`` and yields no rows."""
    def count(batches):
        tally = Tally(spec, bins)
        for batch in batches:
            tally.add(batch)
        total.add(tally)
        return iter(())
    return count
