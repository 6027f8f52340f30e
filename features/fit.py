"""Fitting a feature spec on the training split, in as few distributed passes as the spec allows.

1. One Spark job of three aggregations over the input, each over a scan of its own (``_first_pass``):
   - rows and label classes per split; for every numeric column (and every datetime part) the present values
     per split and the training split's min, max, mean and standard deviation, plus the moments of log1p(value)
     for ``log`` columns;
   - the training values' approximate quantiles (``percentile_approx``, rank error ``quantile_error``): those the
     spec needs (``robust``, ``ple``, ``missing: median``, ``clip``) and every numeric column's deciles for the
     drift profile, from one summary per column. An aggregation of its own: ``percentile_approx`` is an object
     aggregate, and one beside the simple aggregates above would take them all off Spark's generated code (several
     times slower);
   - one ``groupBy`` over the exploded categorical values of all categorical columns: counts per value and split
     (missing values included). Ranking, ``min_count`` and ``top_k`` run in Spark; only the kept values (and
     per-column totals) reach the driver.
2. Only when some column clips and needs moments: one aggregation of the clipped values' mean and deviation, which
   need the quantiles first (quantiles, min and max of clipped values follow from the unclipped ones, since
   clipping is monotone).
3. The training split's drift profile (``features.profile``), over the split or, beyond a million rows, a uniform
   sample of about a million: counts over the bins pass 1's deciles and vocabularies fix, of the rows featurized
   with the fitted state, made in Spark's Python workers as infer makes them (``features.tally``). A pass of its
   own: it counts featurized rows, which need every fitted statistic, the clipped moments included.

The aggregations run without adaptive execution (``FIT_SETTINGS``), which made three Spark jobs of each.
Only small statistics are collected to the driver; no input row ever is.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.features.errors import FeatureError
from dlpipe.features.expressions import (
    categorical_value, check_label_type, datetime_part, describe_classes, encoded_label, numeric_value,
    out_of_log_domain,
)
from dlpipe.features.fitted import DEFAULT_QUANTILE_ERROR, FittedFeatures, NumericStats, Vocabulary
from dlpipe.features.profile import DECILES, TRAINING_SAMPLE, Profile, TrainingProfile, in_sample, numeric_bins
from dlpipe.features.spec import CategoricalFeature, DatetimeFeature, FeatureSpec, NumericFeature
from dlpipe.spark_settings import spark_settings

SPLITS = ("train", "validation", "test")
DATETIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType, T.StringType)  # a datetime feature's column
# A vocabulary beyond this many values is almost certainly an id column: refuse rather than collect it.
MAX_VOCABULARY = 1_000_000


@dataclass(frozen=True)
class FitReport:
    """What fitting saw, per split: rows, positive labels, missing values per column, and per categorical column
    the rows that map to the reserved id 0 (``other``) and, of those, values never seen in training (``unseen``)."""

    rows: dict[str, int]
    positives: dict[str, int]
    missing: dict[str, dict[str, int]]
    other: dict[str, dict[str, int]] = field(default_factory=dict)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"rows": self.rows, "positives": self.positives, "missing": self.missing,
                "other": self.other, "unseen": self.unseen}


def check_input(df: DataFrame, spec: FeatureSpec, source: str = "the input", require_label: bool = True) -> None:
    """Fail, naming the column, if the spec's columns are missing from ``df`` or of the wrong kind."""
    types = {f.name: f.dataType for f in df.schema.fields}
    wanted = [c for c in spec.input_columns if require_label or c != spec.label.column]
    missing = [c for c in wanted if c not in types]
    if missing:
        raise FeatureError(
            f"column {missing[0]!r} from the feature spec is not in {source} "
            f"(its columns: {', '.join(df.columns)}); fix the spec or the input"
        )
    for f in spec.numeric:
        dtype = types[f.column]
        if not isinstance(dtype, T.NumericType):
            raise FeatureError(
                f"column {f.column!r} is declared numeric but is {dtype.simpleString()} in {source}; "
                "list it under categorical or cast it in the input"
            )
    for f in spec.categorical:
        dtype = types[f.column]
        if not isinstance(dtype, (T.StringType, T.IntegralType, T.BooleanType, T.DateType)):
            raise FeatureError(
                f"column {f.column!r} is declared categorical but is {dtype.simpleString()} in {source}; "
                "a categorical column must be string, integer, boolean or date"
            )
    for f in spec.datetime:
        for name, column in f.fields:
            if not isinstance(types[column], T.NumericType):
                raise FeatureError(f"column {column!r} is the {name} of datetime feature {f.name!r} but is "
                                   f"{types[column].simpleString()} in {source}; it must hold integers")
        if f.column is not None and not isinstance(types[f.column], DATETIME_TYPES):
            raise FeatureError(f"column {f.column!r} of datetime feature {f.name!r} is "
                               f"{types[f.column].simpleString()} in {source}; it must be a timestamp, a date or text "
                               "(or name its year, month, day and hour columns as fields)")
    if require_label:
        check_label_type(spec.label, types[spec.label.column])


class _Aggregates:
    """Named aggregate expressions evaluated in one global ``agg``; results looked up by key after ``run``."""

    def __init__(self) -> None:
        self._columns: list[Column] = []
        self._keys: dict[tuple, int] = {}
        self._row = None

    def add(self, key: tuple, column: Column) -> None:
        self._keys[key] = len(self._columns)
        self._columns.append(column.alias(f"a{len(self._columns)}"))

    def run(self, df: DataFrame) -> "_Aggregates":
        if self._columns:
            with spark_settings(df.sparkSession, FIT_SETTINGS):
                self.read(self.frame(df).collect()[0])
        return self

    def frame(self, df: DataFrame) -> DataFrame:
        """The one-row aggregation of ``df`` (``run`` collects it; ``in_one_job`` with others); its row goes to
        ``read``."""
        return df.agg(*self._columns)

    def read(self, row) -> "_Aggregates":
        self._row = row
        return self

    def __getitem__(self, key: tuple):
        return self._row[self._keys[key]]

    def as_dict(self) -> dict[tuple, object]:
        return {key: self._row[i] for key, i in self._keys.items()}


# Spark compiles a plan stage to Java only while its rows have at most spark.sql.codegen.maxFields (100) fields and
# its generated methods stay under spark.sql.codegen.hugeMethodLimit; a wide aggregation (hundreds of counts and
# moments) silently falls back to interpreted evaluation, 3-5x slower here (1M rows, 279 aggregates: 10.7 s -> 3.2 s).
# Both limits are raised for our own aggregations only; Spark still falls back by itself if compilation fails.
# Adaptive execution is off for them: it has nothing to tune in an aggregation whose result is one row or a few
# thousand (one partition after the exchange), and it ran each as three Spark jobs instead of one, with a
# re-planning round between them (about 1 s of driver time per aggregation at 3,000 rows).
FIT_SETTINGS = {"spark.sql.codegen.maxFields": "100000", "spark.sql.codegen.hugeMethodLimit": "100000000",
                "spark.sql.adaptive.enabled": "false"}


def in_one_job(parts: dict[str, DataFrame]) -> dict[str, list]:
    """The rows of several small queries, by name, computed in one Spark job: a union of their rows, each query's
    packed in a struct column of its own (null in the other queries' rows). Each query still scans its input (and
    lists a Delta input's files) on its own; what is shared is the job: its scheduling and one collect."""
    names = list(parts)
    types = {name: part.schema for name, part in parts.items()}
    packed = None
    for name, part in parts.items():
        columns = [F.struct(*[F.col("`{}`".format(c.replace("`", "``"))) for c in part.columns]).alias(other)
                   if other == name
                   else F.lit(None).cast(types[other]).alias(other) for other in names]
        rows = part.select(*columns)
        packed = rows if packed is None else packed.unionAll(rows)
    with spark_settings(packed.sparkSession, FIT_SETTINGS):
        collected = packed.collect()
    return {name: [r[name] for r in collected if r[name] is not None] for name in names}


def fit_features(
    df: DataFrame,
    spec: FeatureSpec,
    split_column: str | None = None,
    quantile_error: float = DEFAULT_QUANTILE_ERROR,
    source: str = "the input",
    key: str | None = None,
) -> tuple[FittedFeatures, FitReport]:
    """Fit ``spec`` on the rows of ``df`` whose ``split_column`` is 'train' (all rows when it is None).

    Fails before anything is written on: an empty input, a missing ``key`` value, labels outside the declared
    classes, missing values in a ``reject`` column, an empty training split, values <= -1 in a ``log`` column,
    statistics that are not finite, oversized vocabularies.
    """
    check_input(df, spec, source)
    types = {f.name: f.dataType for f in df.schema.fields}
    splits = SPLITS if split_column else ("train",)
    is_train = (F.col(split_column) == "train") if split_column else F.lit(True)
    label = encoded_label(spec.label, types[spec.label.column])
    accuracy = max(1, int(round(1.0 / quantile_error)))

    profile, (quantiles, deciles), counted = _first_pass(df, spec, split_column, label, splits, types, key,
                                                          is_train, accuracy)
    rows = {s: profile["rows", s] for s in splits}
    if sum(rows.values()) == 0:
        raise FeatureError(f"{source} has no rows: nothing to featurize (check the input)")
    if profile["null_keys",]:
        raise FeatureError(
            f"key column {key!r} is null in {profile['null_keys',]:,} of {sum(rows.values()):,} rows: every row "
            "needs a key (it places the row in a split and joins its prediction to its label); fix the input or "
            "set featurize.key to another column")
    bad_labels = profile["bad_labels",]
    if bad_labels:
        examples = [r[0] for r in df.where(label.isNull()).select(spec.label.column).distinct().limit(5).collect()]
        raise FeatureError(
            f"label column {spec.label.column!r} has {bad_labels:,} rows outside {describe_classes(spec.label)} "
            f"(for example {sorted(examples, key=repr)}); fix the input or featurize.label"
        )
    missing = {f.column: {s: rows[s] - profile["present", f.column, s] for s in splits} for f in spec.numeric}
    present = {f.column: profile["present", f.column, "train"] for f in spec.numeric}  # training values per column
    datetime_missing = {f.output_column: {s: rows[s] - profile["present", _datetime_key(f), s] for s in splits}
                        for f in spec.datetime}
    for f in spec.numeric:
        total = sum(missing[f.column].values())
        if f.missing == "reject" and total:
            raise FeatureError(
                f"column {f.column!r} has {total:,} rows with a missing value (null, NaN or infinite"
                f"{', or <= -1 for log' if f.transform == 'log' else ''}) and its missing-value policy is reject; "
                "clean the input or choose mean, median or constant"
            )
    if rows["train"] == 0:
        raise FeatureError(
            f"the training split of {source} is empty: nothing to fit the features on (check the split fractions)"
        )
    for f in spec.numeric:
        below = profile["below_log", f.column] if f.transform == "log" else 0
        if below:
            raise FeatureError(
                f"column {f.column!r} has {below:,} training values <= -1, where log1p is "
                "undefined; choose another transform or shift the column"
            )
        if f.transform == "log" and f.missing == "constant" and f.fill_value <= -1:
            raise FeatureError(f"column {f.column!r}: the fill value {f.fill_value} is <= -1, outside log1p's domain")

    sample = in_sample(spec, TRAINING_SAMPLE / rows["train"], (key,) if key else ()) \
        if rows["train"] > TRAINING_SAMPLE else None
    clipped = _clipped_moments(df, spec, present, quantiles, is_train)
    clipped.update(_rescaled_moments(df, spec, profile, present, quantiles, clipped, is_train))
    numeric = {f.column: _numeric_stats(f, profile, quantiles.get(f.column), clipped.get(f.column), present[f.column],
                                        missing[f.column]["train"])
               for f in spec.numeric}
    vocabularies, other, unseen, categorical_missing = _vocabularies(counted, spec.categorical, splits)
    missing.update(categorical_missing)
    missing.update(datetime_missing)
    fitted = FittedFeatures(
        spec=spec,
        numeric=numeric,
        vocabularies=vocabularies,
        datetime={f.output_column: _datetime_stats(f, profile, datetime_missing[f.output_column]["train"])
                  for f in spec.datetime if f.encoding == "number"},
        input_schema={c: types[c].simpleString() for c in spec.input_columns},
        train_rows=rows["train"],
        quantile_error=quantile_error,
    )
    train = df.where(is_train)
    fitted = dataclasses.replace(fitted, training_profile=_training_profile(
        train if sample is None else train.where(sample), fitted, profile, deciles))
    report = FitReport(rows, {s: profile["positives", s] for s in splits}, missing, other, unseen)
    return fitted, report


def _first_pass(df: DataFrame, spec: FeatureSpec, split_column: str | None, label: Column,
                splits: tuple[str, ...], types: dict[str, T.DataType], key: str | None, is_train: Column,
                accuracy: int) -> tuple[dict[tuple, object], tuple[dict, dict], list]:
    """Pass 1, three aggregations in one Spark job (``in_one_job``): the profile (``_profile``), the quantiles
    (``_quantiles``) and the categorical value counts (``_value_counts``)."""
    aggs, profile, names = _profile(df, spec, split_column, label, splits, types, key)
    parts = {"profile": profile}
    quantiles = _quantiles(spec, accuracy)
    if quantiles is not None:
        parts["quantiles"] = quantiles.frame(df.where(is_train))
    if spec.categorical:
        parts["counts"] = _value_counts(df, spec.categorical, split_column, splits)
    rows = in_one_job(parts)
    return (_profile_figures(aggs.read(rows["profile"][0]), splits, names),
            _quantile_figures(spec, None if quantiles is None else quantiles.read(rows["quantiles"][0])),
            rows.get("counts", []))


def _profile(df: DataFrame, spec: FeatureSpec, split_column: str | None, label: Column,
             splits: tuple[str, ...], types: dict[str, T.DataType], key: str | None
             ) -> tuple[_Aggregates, DataFrame, list[str]]:
    """The profile, one global aggregation: rows and positive labels per split, invalid labels, present values per
    split of every numeric column and datetime part, and the training split's min, max, mean and deviation (and
    log1p moments) of each (keyed by numeric column and by datetime output column). (The aggregates, the
    aggregation, the names of the values it profiles.)

    Per-split figures are conditional counts in one ungrouped ``agg``, not a ``groupBy(split)``: a grouped
    aggregation keeps its hundreds of buffers in a hash map row instead of local variables, 1.5x slower here
    (5M rows, 28 columns: 6.0 s vs 4.0 s). The last split's counts are the total minus the others'. Each value is
    cleaned once, in a projection below the aggregate. Categorical missing values are counted by ``_value_counts``.
    """
    split = F.col(split_column) if split_column else F.lit("train")
    projected = [*[(split == s).alias(f"__in_{s}") for s in splits[:-1]], label.alias("__label")]
    if key is not None:
        projected.append(F.col(key).isNull().alias("__null_key"))
    for i, f in enumerate(spec.numeric):
        projected.append(numeric_value(f).alias(f"__n{i}"))
        if f.transform == "log":
            projected.append(out_of_log_domain(f).alias(f"__d{i}"))
    for i, f in enumerate(spec.datetime):
        projected.append(datetime_part(f, types.get(f.column)).cast("double").alias(f"__t{i}"))
    train = F.col("__in_train") if len(splits) > 1 else F.lit(True)
    aggs = _Aggregates()
    aggs.add(("rows",), F.count(F.lit(1)))
    aggs.add(("positives",), F.count(F.when(F.col("__label") == 1, 1)))
    aggs.add(("bad_labels",), F.count(F.when(F.col("__label").isNull(), 1)))
    aggs.add(("null_keys",), F.count(F.when(F.col("__null_key"), 1)) if key is not None else F.lit(0))
    for s in splits[:-1]:
        inside = train if s == "train" else F.col(f"__in_{s}")
        aggs.add(("rows", s), F.count(F.when(inside, 1)))
        aggs.add(("positives", s), F.count(F.when(inside & (F.col("__label") == 1), 1)))
    values = [(f.column, F.col(f"__n{i}")) for i, f in enumerate(spec.numeric)]
    values += [(_datetime_key(f), F.col(f"__t{i}")) for i, f in enumerate(spec.datetime)]
    for name, value in values:
        train_value = F.when(train, value)
        aggs.add(("present", name), F.count(value))
        for s in splits[:-1]:
            aggs.add(("present", name, s), F.count(train_value if s == "train" else F.when(F.col(f"__in_{s}"), value)))
        aggs.add(("min", name), F.min(train_value))
        aggs.add(("max", name), F.max(train_value))
        aggs.add(("mean", name), F.avg(train_value))
        aggs.add(("std", name), F.stddev_pop(train_value))
    for i, f in enumerate(spec.numeric):
        train_value = F.when(train, F.col(f"__n{i}"))
        if f.transform == "log":
            aggs.add(("below_log", f.column), F.count(F.when(train & F.col(f"__d{i}"), 1)))
            aggs.add(("log_mean", f.column), F.avg(F.log1p(train_value)))
            aggs.add(("log_std", f.column), F.stddev_pop(F.log1p(train_value)))
    return aggs, aggs.frame(df.select(*projected)), [name for name, _ in values]


def _profile_figures(aggs: _Aggregates, splits: tuple[str, ...], names: list[str]) -> dict[tuple, object]:
    """The profile's figures by key, the last split's counts filled in (the total minus the others')."""
    profile = aggs.as_dict()
    last = splits[-1]
    profile["rows", last] = profile["rows",] - sum(profile["rows", s] for s in splits[:-1])
    profile["positives", last] = profile["positives",] - sum(profile["positives", s] for s in splits[:-1])
    for name in names:
        others = sum(profile["present", name, s] for s in splits[:-1])
        profile["present", name, last] = profile["present", name] - others
    return profile


def _training_profile(rows: DataFrame, fitted: FittedFeatures, first: dict[tuple, object],
                      deciles: dict[str, list[float] | None]) -> TrainingProfile:
    """The last pass, over the training split (beyond ``TRAINING_SAMPLE`` rows, a uniform sample of about that
    many: ``rows``): the split's drift profile (``features.profile``), counted as infer counts the rows it scores,
    over bins made of pass 1's deciles, range and deviation (of values before clipping) and vocabularies. A pass
    of its own: it counts the rows featurized with the whole fitted state."""
    spec = fitted.spec
    numeric = {f.column: numeric_bins(deciles.get(f.column) or [], _finite_or_none(first["min", f.column]),
                                      _finite_or_none(first["max", f.column]), _finite_or_none(first["std", f.column]))
               for f in spec.numeric}
    from dlpipe.features.tally import tally_rows  # it applies the features, and features.apply imports this module

    bins = TrainingProfile(numeric, Profile(0, {}, {})).bins(fitted.vocabularies)
    return TrainingProfile(numeric, tally_rows(rows, fitted, bins))


# ------------------------------------------------------------------------------------------------ numeric


def _bounds(f: NumericFeature, quantiles: list[float] | None) -> tuple[float, float] | None:
    if f.clip is None or quantiles is None:
        return None
    by_q = dict(zip(f.quantiles(), quantiles))
    return float(by_q[f.clip[0]]), float(by_q[f.clip[1]])


def _clamp(value: float | None, bounds: tuple[float, float] | None) -> float | None:
    if value is None or bounds is None:
        return value
    return min(max(value, bounds[0]), bounds[1])


def clip_expression(value: Column, bounds: tuple[float, float] | None) -> Column:
    if bounds is None:
        return value
    return F.when(value < bounds[0], F.lit(bounds[0])).when(value > bounds[1], F.lit(bounds[1])).otherwise(value)


def _needs_moments(f: NumericFeature) -> bool:
    return f.transform in ("standard", "log") or f.missing == "mean"


def _quantiles(spec: FeatureSpec, accuracy: int) -> _Aggregates | None:
    """Per numeric column, one ``percentile_approx`` of its training values at the quantiles its fit needs
    (``NumericFeature.quantiles``) and at the deciles of the drift profile (None without numeric columns)."""
    if not spec.numeric:
        return None
    aggs = _Aggregates()
    for f in spec.numeric:
        aggs.add(("quantiles", f.column), F.percentile_approx(numeric_value(f), list(_probes(f)), accuracy))
    return aggs


def _probes(f: NumericFeature) -> tuple[float, ...]:
    return tuple(sorted({*f.quantiles(), *DECILES}))


def _quantile_figures(spec: FeatureSpec, aggs: _Aggregates | None
                      ) -> tuple[dict[str, list[float] | None], dict[str, list[float] | None]]:
    """(the quantiles each column's fit needs, each numeric column's deciles), from ``_quantiles``' aggregates."""
    needed, deciles = {}, {}
    for f in spec.numeric:
        values = aggs["quantiles", f.column]
        at = None if values is None else dict(zip(_probes(f), values))
        if f.quantiles():
            needed[f.column] = None if at is None else [at[q] for q in f.quantiles()]
        deciles[f.column] = None if at is None else [at[q] for q in DECILES]
    return needed, deciles


def _clipped_moments(df: DataFrame, spec: FeatureSpec, present: dict[str, int], quantiles: dict,
                     is_train: Column) -> dict[str, dict]:
    """Mean and deviation (and their log1p versions) of the clipped training values: one more pass, only for
    columns that clip and use moments."""
    columns = [f for f in spec.numeric if f.clip is not None and _needs_moments(f) and present[f.column]]
    if not columns:
        return {}
    aggs = _Aggregates()
    for f in columns:
        value = clip_expression(numeric_value(f), _bounds(f, quantiles[f.column]))
        train_value = F.when(is_train, value)
        aggs.add(("mean", f.column), F.avg(train_value))
        aggs.add(("std", f.column), F.stddev_pop(train_value))
        if f.transform == "log":
            aggs.add(("log_mean", f.column), F.avg(F.log1p(train_value)))
            aggs.add(("log_std", f.column), F.stddev_pop(F.log1p(train_value)))
    aggs.run(df)
    return {f.column: {k: aggs[k, f.column] for k in ("mean", "std", "log_mean", "log_std")
                       if k in ("mean", "std") or f.transform == "log"} for f in columns}


def _rescaled_moments(df: DataFrame, spec: FeatureSpec, profile: dict[tuple, object], present: dict[str, int],
                      quantiles: dict, clipped: dict[str, dict], is_train: Column) -> dict[str, dict]:
    """Mean and deviation again, of the values divided by their largest magnitude, for the columns whose moments
    overflowed (finite values near the largest double: a sum of ten values of 1e308 is infinite). One more pass,
    only when some column needs it; the moments are the rescaled ones times that magnitude, which cannot overflow
    (a mean lies between the minimum and the maximum, a deviation is at most their larger magnitude)."""
    redo = {}
    for f in spec.numeric:
        if not (_needs_moments(f) and present[f.column]):
            continue
        moments = clipped.get(f.column) or {k: profile[k, f.column] for k in ("mean", "std")}
        if all(_finite_or_none(moments[k]) is not None for k in ("mean", "std")):
            continue
        bounds = _bounds(f, quantiles.get(f.column))
        low, high = bounds or (profile["min", f.column], profile["max", f.column])
        magnitude = max(abs(low), abs(high))
        if math.isfinite(magnitude) and magnitude > 0:
            redo[f] = (bounds, magnitude)
    if not redo:
        return {}
    aggs = _Aggregates()
    for f, (bounds, magnitude) in redo.items():
        value = F.when(is_train, clip_expression(numeric_value(f), bounds)) / F.lit(magnitude)
        aggs.add(("mean", f.column), F.avg(value))
        aggs.add(("std", f.column), F.stddev_pop(value))
    aggs.run(df)
    out = {}
    for f, (_, magnitude) in redo.items():
        out[f.column] = {**(clipped.get(f.column) or {}), "mean": aggs["mean", f.column] * magnitude,
                         "std": aggs["std", f.column] * magnitude}
        if f.transform == "log" and f.column not in clipped:
            out[f.column].update(log_mean=profile["log_mean", f.column], log_std=profile["log_std", f.column])
    return out


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _scale(value: float | None) -> float:
    """A divisor: a zero, missing or non-finite spread (a constant or all-missing column) divides by 1."""
    return value if value is not None and math.isfinite(value) and value > 0 else 1.0


def _numeric_stats(f: NumericFeature, first: dict[tuple, float], raw_quantiles: list[float] | None, clipped: dict | None,
                   count: int, train_missing: int) -> NumericStats:
    c = f.column
    bounds = _bounds(f, raw_quantiles)
    quantiles = {repr(q): _clamp(float(v), bounds) for q, v in zip(f.quantiles(), raw_quantiles or [])}
    moments = clipped or {k: first[k, c] for k in ("mean", "std")}
    if f.transform == "log" and not clipped:
        moments.update(log_mean=first["log_mean", c], log_std=first["log_std", c])
    mean, std = _finite_or_none(moments["mean"]), _finite_or_none(moments["std"])
    log_mean, log_std = _finite_or_none(moments.get("log_mean")), _finite_or_none(moments.get("log_std"))
    if count and _needs_moments(f):
        for key in ("log_mean", "log_std") if f.transform == "log" else ("mean", "std"):
            if _finite_or_none(moments.get(key)) is None:
                raise FeatureError(f"column {c!r}: its training {key.replace('_', ' ')} is {moments.get(key)}, not a "
                                   "finite number: clip the column (clip: [0.001, 0.999]) or fix the input")
    median = quantiles.get("0.5")

    if f.transform == "standard":
        center, scale = mean or 0.0, _scale(std)
    elif f.transform == "log":
        center, scale = log_mean or 0.0, _scale(log_std)
    elif f.transform == "minmax":
        lo, hi = _clamp(_finite_or_none(first["min", c]), bounds), _clamp(_finite_or_none(first["max", c]), bounds)
        center, scale = lo or 0.0, _scale(None if lo is None else hi - lo)
    elif f.transform == "robust":
        center = median or 0.0
        scale = _scale(None if median is None else quantiles["0.75"] - quantiles["0.25"])
    else:  # none, and ple, whose bins do the scaling
        center, scale = 0.0, 1.0
    edges = _bin_edges([quantiles[repr(q)] for q in f.bin_quantiles()]) if f.transform == "ple" else None

    # The fill value lives in the space before scaling (log1p space for log columns); a column with no training
    # values at all is filled with the centre, so its feature is constant 0.
    to_space = math.log1p if f.transform == "log" else (lambda x: x)
    if f.missing == "mean":
        fill = (log_mean if f.transform == "log" else mean)
    elif f.missing == "median":
        fill = None if median is None else to_space(median)
    elif f.missing == "constant":
        fill = to_space(f.fill_value)
    else:
        fill = None
    return NumericStats(
        count=count,
        missing=int(train_missing),
        min=_clamp(_finite_or_none(first["min", c]), bounds),
        max=_clamp(_finite_or_none(first["max", c]), bounds),
        mean=mean,
        std=std,
        quantiles=quantiles,
        clip_bounds=bounds,
        log_mean=log_mean,
        log_std=log_std,
        fill=center if fill is None else float(fill),
        center=float(center),
        scale=float(scale),
        edges=edges,
    )


def _bin_edges(values: list[float]) -> tuple[float, ...]:
    """A ``ple`` column's bin edges: its distinct training quantiles (a column without values, or with one value,
    gets the one bin [v, v + 1])."""
    edges = sorted({float(v) for v in values if v is not None and math.isfinite(v)})
    if len(edges) < 2:
        low = edges[0] if edges else 0.0
        edges = [low, low + 1.0]
    return tuple(edges)


def _datetime_key(f: DatetimeFeature) -> str:
    """The profile's key for a datetime part (apart from numeric column names, which it could equal)."""
    return f"datetime:{f.output_column}"


def _datetime_stats(f: DatetimeFeature, profile: dict[tuple, object], train_missing: int) -> NumericStats:
    """A ``number``-encoded datetime part's training statistics: z-scored, missing -> the mean."""
    key = _datetime_key(f)
    mean, std = _finite_or_none(profile["mean", key]), _finite_or_none(profile["std", key])
    return NumericStats(
        count=int(profile["present", key, "train"]), missing=int(train_missing),
        min=_finite_or_none(profile["min", key]), max=_finite_or_none(profile["max", key]), mean=mean, std=std,
        quantiles={}, clip_bounds=None, log_mean=None, log_std=None,
        fill=mean or 0.0, center=mean or 0.0, scale=_scale(std),
    )


# ------------------------------------------------------------------------------------------------ categorical


def _per_column(features: tuple[CategoricalFeature, ...], values: list) -> Column:
    """The per-column setting ``values[i]`` for the exploded row's column id."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), F.col("column") + 1)


def _value_counts(df: DataFrame, features: tuple[CategoricalFeature, ...], split_column: str | None,
                  splits: tuple[str, ...]) -> DataFrame:
    """The query of the categorical values (part of pass 1): per column its kept values ranked, with their training
    counts, and the top-ranked row of every column, all carrying the column's totals (``_vocabularies``)."""
    entries = F.array(*[
        F.struct(F.lit(i).alias("column"), categorical_value(f.column).alias("value")) for i, f in enumerate(features)
    ])
    split_value = F.col(split_column) if split_column else F.lit("train")
    counts = (
        df.select(split_value.alias("__split"), F.explode(entries).alias("entry"))
        .groupBy(F.col("entry.column").alias("column"), F.col("entry.value").alias("value"))
        .agg(*[F.count(F.when(F.col("__split") == s, 1)).alias(s) for s in splits])
    )
    value_allowed = F.col("value").isNotNull() | _per_column(features, [f.missing == "value" for f in features])
    eligible = (F.col("train") >= _per_column(features, [f.min_count for f in features])) & value_allowed
    order = Window.partitionBy("column").orderBy(eligible.desc(), F.col("train").desc(), F.col("value").asc_nulls_first())
    top_k = _per_column(features, [f.top_k or 2**31 - 1 for f in features])
    ranked = counts.select("*", F.row_number().over(order).alias("rank"), eligible.alias("eligible"))
    ranked = ranked.select("*", (F.col("eligible") & (F.col("rank") <= top_k)).alias("kept"))
    # Per-column totals ride along on the collected rows (window sums), so one job returns everything: the kept
    # values, plus the top-ranked row of every column to carry the totals of a column that keeps none.
    column = Window.partitionBy("column")
    folded = ~F.col("kept")
    unseen = (F.col("train") == 0) & F.col("value").isNotNull()
    totals = [
        F.count(F.when((F.col("train") > 0) & value_allowed, 1)).over(column).alias("distinct"),
        F.count(F.when(F.col("kept"), 1)).over(column).alias("kept_values"),
    ]
    for s in splits:
        totals.append(F.sum(F.when(F.col("value").isNull(), F.col(s)).otherwise(0)).over(column).alias(f"missing_{s}"))
        totals.append(F.sum(F.when(folded, F.col(s)).otherwise(0)).over(column).alias(f"other_{s}"))
        totals.append(F.sum(F.when(unseen, F.col(s)).otherwise(0)).over(column).alias(f"unseen_{s}"))
    return (
        ranked.select("column", "rank", "value", "train", "kept", *totals)
        .where((F.col("kept") & (F.col("rank") <= MAX_VOCABULARY)) | (F.col("rank") == 1))
    )


def _vocabularies(
    collected: list, features: tuple[CategoricalFeature, ...], splits: tuple[str, ...]
) -> tuple[dict[str, Vocabulary], dict[str, dict[str, int]], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Vocabularies from the rows of ``_value_counts``, and per split the rows folded into id 0 (``other``), the
    values never seen in training (``unseen``) and the missing values (null or empty) of every categorical
    column."""
    summary = {r["column"]: r for r in collected if r["rank"] == 1}
    for i, f in enumerate(features):
        kept = summary[i]["kept_values"] if i in summary else 0
        if kept > MAX_VOCABULARY:
            raise FeatureError(
                f"categorical column {f.column!r} would keep {kept:,} values (min_count {f.min_count}): more than "
                f"{MAX_VOCABULARY:,}; set top_k or a higher min_count, or list it under passthrough if it is an id"
            )
    kept_rows = [r for r in collected if r["kept"]]

    by_column: dict[int, list] = {i: [] for i in range(len(features))}
    for r in sorted(kept_rows, key=lambda r: (r["column"], r["rank"])):
        by_column[r["column"]].append((r["value"], int(r["train"])))
    vocabularies, other, unseen_rows, missing = {}, {}, {}, {}
    for i, f in enumerate(features):
        row = summary.get(i)
        values = by_column[i]
        vocabularies[f.column] = Vocabulary(
            values=tuple(v for v, _ in values),
            counts=tuple(n for _, n in values),
            distinct=int(row["distinct"]) if row else 0,
            folded_rows=int(row["other_train"] or 0) if row else 0,
        )
        other[f.column] = {s: int(row[f"other_{s}"] or 0) if row else 0 for s in splits}
        unseen_rows[f.column] = {s: int(row[f"unseen_{s}"] or 0) if row else 0 for s in splits}
        missing[f.column] = {s: int(row[f"missing_{s}"] or 0) if row else 0 for s in splits}
    return vocabularies, other, unseen_rows, missing
