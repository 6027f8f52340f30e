"""Distribution profiles of a table's feature columns, for drift: the training split's, stored in the feature
artifact, and a scored input's, counted while ``infer`` scores it (as Spark observed metrics of the write: no
second pass over the input).

Both are counts over bins that the training split fixes (``ProfileBins``):

- a numeric column: per cut c (the training minimum, deciles and maximum) the present values below it and the
  sum of ``c - x`` over them, and the sum of ``x - max`` over values above the training maximum (with these the
  area between two cumulative distributions is known exactly between cuts);
- a categorical column: each of the ``TRACKED`` most frequent vocabulary values, the rest of the vocabulary, and the
  values outside it (never seen in training, or too rare to get an id);
- every column: its missing values (as ``numeric_value`` and ``categorical_value`` read them).

Counts add up over partitions, so Spark keeps one buffer per task and merges them; a profile is a few hundred
numbers whatever the input's size.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, Row
from pyspark.sql import functions as F

from dlpipe.features.expressions import categorical_value, numeric_value
from dlpipe.features.spec import FeatureSpec

DECILES = tuple(i / 10 for i in range(1, 10))  # a numeric column's bins: the training deciles
TRACKED = 20  # a categorical column's most frequent values counted one by one


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


def aggregates(spec: FeatureSpec, bins: ProfileBins) -> list[Column]:
    """The aggregate columns whose values ``read`` turns into a ``Profile`` (for ``agg`` or ``observe``)."""
    out = [F.count(F.lit(1)).alias("rows")]
    for i, f in enumerate(spec.numeric):
        b, value = bins.numeric[f.column], numeric_value(f)
        out.append(F.count(value).alias(f"n{i}:present"))
        for k, cut in enumerate(b.cuts):
            short = F.lit(cut) - value
            out.append(F.count(F.when(short > 0, 1)).alias(f"n{i}:below{k}"))
            out.append(F.coalesce(F.sum(F.when(short > 0, short)), F.lit(0.0)).alias(f"n{i}:short{k}"))
        over = value - F.lit(b.high)
        out.append(F.coalesce(F.sum(F.when(over > 0, over)), F.lit(0.0)).alias(f"n{i}:over"))
    for i, f in enumerate(spec.categorical):
        b, value = bins.categorical[f.column], categorical_value(f.column)
        out.append(F.count(value).alias(f"c{i}:present"))
        out += [F.count(F.when(value == F.lit(v), 1)).alias(f"c{i}:tracked{k}") for k, v in enumerate(b.tracked)]
        inside = value.isin(list(b.vocabulary)) if b.vocabulary else F.lit(False)
        out.append(F.count(F.when(inside, 1)).alias(f"c{i}:inside"))
    return out


def read(spec: FeatureSpec, bins: ProfileBins, values: Row | dict) -> Profile:
    """The ``Profile`` from the values of ``aggregates`` (an ``agg``'s row, or an observation's dict)."""
    get = values.asDict() if isinstance(values, Row) else values
    rows = int(get["rows"])
    numeric = {}
    for i, f in enumerate(spec.numeric):
        present, cuts = int(get[f"n{i}:present"]), range(len(bins.numeric[f.column].cuts))
        numeric[f.column] = NumericCounts(rows - present, tuple(int(get[f"n{i}:below{k}"]) for k in cuts),
                                          tuple(float(get[f"n{i}:short{k}"]) for k in cuts), present,
                                          float(get[f"n{i}:over"]))
    categorical = {}
    for i, f in enumerate(spec.categorical):
        present, inside = int(get[f"c{i}:present"]), int(get[f"c{i}:inside"])
        tracked = tuple(int(get[f"c{i}:tracked{k}"]) for k in range(len(bins.categorical[f.column].tracked)))
        categorical[f.column] = CategoryCounts(rows - present, tracked, inside - sum(tracked), present - inside)
    return Profile(rows, numeric, categorical)
