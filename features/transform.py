"""Fitted feature transforms: statistics fitted on the training split, applied as Spark column expressions.

``fit_features`` runs two distributed aggregations (one for all numeric columns, one for all categorical columns)
and brings only the small statistics to the driver. ``apply_features`` is the one code path that turns raw rows into
model inputs, for training and for scoring alike:

- numeric columns: z-score with the training mean and (population) standard deviation, as float32; null, NaN and
  +/-inf become the training mean (0 after scaling); a constant column (std 0) is only centred.
- categorical columns: the value's index in the training vocabulary (1 = most frequent), as int32; values seen
  fewer than ``min_count`` times, unseen values and nulls map to the reserved index 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.errors import FeatureError
from features.schema import UNSEEN_INDEX, FeatureSchema, index_column


@dataclass(frozen=True)
class FeatureSpec:
    """Which input columns become which features."""

    label: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    passthrough: tuple[str, ...] = ()
    min_count: int = 1

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "passthrough": list(self.passthrough),
            "min_count": self.min_count,
        }

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSpec":
        return cls(
            label=data["label"],
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            passthrough=tuple(data["passthrough"]),
            min_count=int(data["min_count"]),
        )


@dataclass(frozen=True)
class NumericStats:
    count: int
    mean: float
    std: float


@dataclass(frozen=True)
class FittedFeatures:
    """Everything ``apply_features`` needs, and nothing that depends on where it is stored."""

    spec: FeatureSpec
    numeric: dict[str, NumericStats]
    vocabularies: dict[str, tuple[str, ...]]
    vocabulary_counts: dict[str, tuple[int, ...]]
    input_schema: dict[str, str]
    train_rows: int
    extra: dict = field(default_factory=dict)

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            label=self.spec.label,
            numeric=self.spec.numeric,
            categorical=self.spec.categorical,
            cardinalities={c: len(self.vocabularies[c]) + 1 for c in self.spec.categorical},
            passthrough=self.spec.passthrough,
        )

    def to_json(self) -> dict:
        return {
            "spec": self.spec.to_json(),
            "train_rows": self.train_rows,
            "input_schema": self.input_schema,
            "numeric": {c: {"count": s.count, "mean": s.mean, "std": s.std} for c, s in self.numeric.items()},
            "categorical": {
                c: {"values": list(self.vocabularies[c]), "counts": list(self.vocabulary_counts[c])}
                for c in self.spec.categorical
            },
            "feature_schema": self.schema.to_json(),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict) -> "FittedFeatures":
        known = {"spec", "train_rows", "input_schema", "numeric", "categorical", "feature_schema"}
        return cls(
            spec=FeatureSpec.from_json(data["spec"]),
            numeric={c: NumericStats(int(s["count"]), float(s["mean"]), float(s["std"])) for c, s in data["numeric"].items()},
            vocabularies={c: tuple(v["values"]) for c, v in data["categorical"].items()},
            vocabulary_counts={c: tuple(int(n) for n in v["counts"]) for c, v in data["categorical"].items()},
            input_schema=dict(data["input_schema"]),
            train_rows=int(data["train_rows"]),
            extra={k: v for k, v in data.items() if k not in known},
        )


def check_input(df: DataFrame, spec: FeatureSpec, require_label: bool = True) -> None:
    """Fail, naming the column, if the spec's columns are missing or of the wrong kind."""
    types = {f.name: f.dataType for f in df.schema.fields}
    wanted = [*spec.numeric, *spec.categorical, *spec.passthrough] + ([spec.label] if require_label else [])
    missing = [c for c in wanted if c not in types]
    if missing:
        raise FeatureError(
            f"column {missing[0]!r} from the feature spec is not in the input "
            f"(input columns: {', '.join(df.columns)}); fix the spec or the input"
        )
    for column in spec.numeric:
        if not isinstance(types[column], T.NumericType):
            raise FeatureError(
                f"column {column!r} is declared numeric but is {types[column].simpleString()}; "
                "list it under categorical or cast it in the input"
            )


def _finite(column: str) -> F.Column:
    value = F.col(column).cast("double")
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def fit_features(train: DataFrame, spec: FeatureSpec) -> FittedFeatures:
    """Fit statistics and vocabularies on the training rows (two distributed passes)."""
    check_input(train, spec)
    aggregates = [F.count(F.lit(1)).alias("__rows")]
    for column in spec.numeric:
        value = _finite(column)
        aggregates += [F.count(value), F.mean(value), F.stddev_pop(value)]
    row = train.agg(*aggregates).first()
    rows = int(row[0])
    if rows == 0:
        raise FeatureError("the training split is empty: nothing to fit the features on (check the input and split fractions)")
    numeric = {}
    for i, column in enumerate(spec.numeric):
        count, mean, std = row[1 + 3 * i], row[2 + 3 * i], row[3 + 3 * i]
        numeric[column] = NumericStats(
            count=int(count),
            mean=float(mean) if mean is not None else 0.0,
            std=float(std) if std is not None and math.isfinite(std) else 0.0,
        )

    vocabularies: dict[str, tuple[str, ...]] = {c: () for c in spec.categorical}
    counts: dict[str, tuple[int, ...]] = {c: () for c in spec.categorical}
    if spec.categorical:
        pairs = F.explode(F.array(*[
            F.struct(F.lit(c).alias("column"), F.col(c).cast("string").alias("value")) for c in spec.categorical
        ])).alias("pair")
        value_counts = (
            train.select(pairs).select("pair.column", "pair.value")
            .where(F.col("value").isNotNull())
            .groupBy("column", "value").count()
            .where(F.col("count") >= spec.min_count)
            .collect()
        )
        # Most frequent first; ties broken by value so that refits on the same data give the same indices.
        for r in sorted(value_counts, key=lambda r: (r["column"], -r["count"], r["value"])):
            vocabularies[r["column"]] += (r["value"],)
            counts[r["column"]] += (int(r["count"]),)

    return FittedFeatures(
        spec=spec,
        numeric=numeric,
        vocabularies=vocabularies,
        vocabulary_counts=counts,
        input_schema={f.name: f.dataType.simpleString() for f in train.schema.fields},
        train_rows=rows,
    )


def check_fitted_schema(df: DataFrame, fitted: FittedFeatures) -> None:
    """Fail if ``df``'s feature columns differ in type from those the artifact was fitted on."""
    spec = fitted.spec
    check_input(df, spec, require_label=False)
    actual = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    differing = [
        f"{c} is {actual[c]}, was {fitted.input_schema[c]}"
        for c in (*spec.numeric, *spec.categorical)
        if fitted.input_schema.get(c) != actual[c]
    ]
    if differing:
        raise FeatureError(
            "the input's schema differs from the one the feature artifact was fitted on: " + "; ".join(differing)
        )


def apply_features(df: DataFrame, fitted: FittedFeatures, keep: tuple[str, ...] = ()) -> DataFrame:
    """Feature columns for ``df``: passthrough, ``keep`` and label (if present) columns, float32 numeric
    columns and int32 ``<categorical>_index`` columns (see the module docstring)."""
    check_fitted_schema(df, fitted)
    spec = fitted.spec
    out = df
    spark = df.sparkSession
    for column in spec.categorical:
        vocabulary = spark.createDataFrame(
            [(value, i + 1) for i, value in enumerate(fitted.vocabularies[column])],
            schema=T.StructType([
                T.StructField("__value", T.StringType(), False),
                T.StructField(index_column(column), T.IntegerType(), False),
            ]),
        )
        out = out.join(F.broadcast(vocabulary), F.col(column).cast("string") == F.col("__value"), "left").drop("__value")

    selected = []
    for column in dict.fromkeys((*spec.passthrough, *keep)):
        selected.append(F.col(column))
    if spec.label in df.columns:
        selected.append(F.col(spec.label).cast("int").alias(spec.label))
    for column in spec.numeric:
        stats = fitted.numeric[column]
        scale = stats.std if stats.std > 0 else 1.0
        filled = F.coalesce(_finite(column), F.lit(stats.mean))
        selected.append(((filled - F.lit(stats.mean)) / F.lit(scale)).cast("float").alias(column))
    for column in spec.categorical:
        name = index_column(column)
        selected.append(F.coalesce(F.col(name), F.lit(UNSEEN_INDEX)).cast("int").alias(name))
    return out.select(*selected)
