"""Drift of a scored input from the training split, feature by feature (docs/drift.md).

``infer`` counts the scored input's profile (``features.profile``) while it scores, and compares it here with the
training profile in the feature artifact:

- numeric features: the population stability index over the training bins, and the Wasserstein distance between
  the two distributions divided by the training standard deviation;
- categorical features: the Jensen-Shannon distance between the shares of the most frequent training values, the
  rest of the vocabulary and the values outside it, and the change in the share of values outside the vocabulary;
- every feature: the change in its missing share.

Each statistic is checked against its threshold (``infer.drift``, per feature if set), written to the Delta table
``infer.drift.table``, summarised at the end of ``infer`` and shown in the run report.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from dlpipe.features.profile import CategoryCounts, NumericBins, NumericCounts, Profile, ProfileBins
from dlpipe.pipelines.config.schema import DriftConfig
from dlpipe.pipelines.tables import replace_run_rows

SHARE_FLOOR = 1e-4  # a bin empty on one side counts as this share in the PSI (no infinite terms)
PLOTTED = 4         # features shown with their distributions in the run report


@dataclass(frozen=True)
class Measure:
    feature: str
    kind: str        # numeric or categorical
    statistic: str   # one of DRIFT_STATISTICS
    value: float
    threshold: float

    @property
    def alert(self) -> bool:
        if self.statistic == "missing_share":  # missing values appearing or disappearing
            return abs(self.value) > self.threshold
        return self.value > self.threshold

    @property
    def severity(self) -> float:
        """How far past (or short of) its threshold the value is: 1 at the threshold."""
        return abs(self.value) / self.threshold if self.threshold > 0 else math.inf

    def to_json(self) -> dict:
        return {"feature": self.feature, "statistic": self.statistic, "value": self.value,
                "threshold": self.threshold, "alert": self.alert}


# ------------------------------------------------------------------------------------------------ statistics


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors: sum of (actual - expected) * ln(actual / expected)."""
    e, a = np.maximum(expected, SHARE_FLOOR), np.maximum(actual, SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (natural logarithm, as scipy's ``jensenshannon``): 0 for equal shares, at most
    sqrt(ln 2) = 0.833 for disjoint ones."""
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        inside = x > 0
        return float(np.sum(x[inside] * np.log(x[inside] / m[inside])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def bin_shares(bins: NumericBins, counts: NumericCounts) -> np.ndarray:
    """Shares of the present values per bin: below the first cut, between cuts, at or above the last."""
    below = np.array(counts.below, dtype=float)
    per_bin = np.diff(np.concatenate([[0.0], below, [float(counts.present)]]))
    return per_bin / max(counts.present, 1)


def wasserstein(bins: NumericBins, train: NumericCounts, scored: NumericCounts) -> float:
    """The Wasserstein-1 distance, the area between the two cumulative distributions F, divided by the training
    standard deviation (a constant training column: not divided).

    The profile's sums give the integral of F up to every cut exactly (the integral of F up to c is the mean of
    max(c - x, 0)), so between two cuts the signed area between the distributions is exact; its absolute value is
    the distance there unless the two cross inside the bin. Below the first cut (the training minimum) and above
    the last (the maximum) the training F is 0 and 1, and the area is exact.

    Infinite when a side's sums overflowed (values near the largest double, 1.8e308): the distance is then beyond
    any threshold, not NaN, which no threshold would catch."""
    n_t, n_s = max(train.present, 1), max(scored.present, 1)
    sums = [*train.shortfall, *scored.shortfall, train.over, scored.over]
    if not np.isfinite(sums).all():
        return math.inf
    integral = np.array(train.shortfall) / n_t - np.array(scored.shortfall) / n_s  # of F_train - F_scored up to c
    area = abs(integral[0]) + float(np.abs(np.diff(integral)).sum())
    area += abs(train.over / n_t - scored.over / n_s)
    distance = area / (bins.std if bins.std > 0 else 1.0)
    return distance if math.isfinite(distance) else math.inf


def category_shares(counts: CategoryCounts) -> np.ndarray:
    """Shares of the present values: each tracked value, the rest of the vocabulary, outside the vocabulary."""
    values = np.array([*counts.tracked, counts.rest, counts.outside], dtype=float)
    return values / max(counts.present, 1)


def missing_share(rows: int, missing: int) -> float:
    return missing / rows if rows else 0.0


def measure(bins: ProfileBins, train: Profile, scored: Profile, cfg: DriftConfig) -> list[Measure]:
    """Every statistic of every profiled feature, with its threshold. A feature without present values on either
    side gets its missing share change only."""
    out = []

    def add(feature: str, kind: str, statistic: str, value: float) -> None:
        out.append(Measure(feature, kind, statistic, float(value), cfg.threshold(feature, statistic)))

    for column, t in train.numeric.items():
        s, b = scored.numeric[column], bins.numeric[column]
        if t.present and s.present:
            add(column, "numeric", "psi", psi(bin_shares(b, t), bin_shares(b, s)))
            add(column, "numeric", "wasserstein", wasserstein(b, t, s))
        add(column, "numeric", "missing_share",
            missing_share(scored.rows, s.missing) - missing_share(train.rows, t.missing))
    for column, t in train.categorical.items():
        s = scored.categorical[column]
        if t.present and s.present:
            add(column, "categorical", "jensen_shannon", jensen_shannon(category_shares(t), category_shares(s)))
            add(column, "categorical", "unseen_share", s.outside / s.present - t.outside / t.present)
        add(column, "categorical", "missing_share",
            missing_share(scored.rows, s.missing) - missing_share(train.rows, t.missing))
    return out


def alerts(measures: list[Measure]) -> list[Measure]:
    """The measures over their thresholds, the most severe first."""
    return sorted((m for m in measures if m.alert), key=lambda m: -m.severity)


def most_drifted(measures: list[Measure], count: int = PLOTTED) -> list[str]:
    """The ``count`` features with the highest severity of any statistic, highest first."""
    worst: dict[str, float] = {}
    for m in measures:
        worst[m.feature] = max(worst.get(m.feature, 0.0), m.severity)
    return sorted(worst, key=lambda f: -worst[f])[:count]


# ------------------------------------------------------------------------------------------------ the table


TABLE_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType(), False),
    T.StructField("run_date", T.DateType(), False),
    T.StructField("scored_at", T.TimestampType(), False),
    T.StructField("model_name", T.StringType(), False),
    T.StructField("model_version", T.StringType(), False),
    T.StructField("feature_version", T.StringType(), False),
    T.StructField("feature", T.StringType(), False),
    T.StructField("kind", T.StringType(), False),
    T.StructField("statistic", T.StringType(), False),
    T.StructField("value", T.DoubleType(), False),
    T.StructField("threshold", T.DoubleType(), False),
    T.StructField("alert", T.BooleanType(), False),
])


def write_table(spark: SparkSession, table: str, measures: list[Measure], run_id: str, run_date: dt.date,
                scored_at: dt.datetime, model: tuple[str, str, str]) -> None:
    """The run's measures, replacing those of an earlier attempt of the same run (one Delta commit)."""
    rows = [(run_id, run_date, scored_at, *model, m.feature, m.kind, m.statistic, m.value, m.threshold, m.alert)
            for m in measures]
    replace_run_rows(spark, spark.createDataFrame(rows, TABLE_SCHEMA), table, run_id, ("run_date",))


def summary(measures: list[Measure], table: str, run_id: str, sample: tuple[int, int] | None = None) -> str:
    """The lines ``infer`` prints: one per alerting feature, or that none drifted. ``sample``: (rows profiled,
    rows scored) when the distributions were compared on a sample."""
    found = alerts(measures)
    if not measures:
        return ""
    on = f" on a sample of {sample[0]:,} of {sample[1]:,} rows" if sample else ""
    if not found:
        return (f"  drift: no feature crossed its threshold ({plural(len({m.feature for m in measures}), 'feature')} "
                f"compared with the training split{on}; {table}, run {run_id})")
    by_feature: dict[str, list[Measure]] = {}
    for m in found:
        by_feature.setdefault(m.feature, []).append(m)
    lines = [f"  drift: {plural(len(by_feature), 'feature')} crossed a threshold{on} (details: {table}, run {run_id}):"]
    for feature, items in by_feature.items():
        lines.append(f"    {feature}: " + ", ".join(f"{m.statistic} {m.value:+.3f}" if m.statistic.endswith("share")
                                                   else f"{m.statistic} {m.value:.3f}"
                                                   for m in items) + " (thresholds "
                     + ", ".join(f"{m.threshold:g}" for m in items) + ")")
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def distributions(bins: ProfileBins, train: Profile, scored: Profile, features: list[str]) -> dict[str, dict]:
    """Per feature in ``features``, its training and scored distributions as the report plots them: the bins'
    labels, the shares of present values per bin on each side, and the missing shares (JSON, for the runs
    table)."""
    out = {}
    for feature in features:
        if feature in train.numeric:
            b, t, s = bins.numeric[feature], train.numeric[feature], scored.numeric[feature]
            labels, shares = numeric_bin_labels(b), (bin_shares(b, t), bin_shares(b, s))
        else:
            c, t, s = bins.categorical[feature], train.categorical[feature], scored.categorical[feature]
            labels, shares = [*c.tracked, "other values", "outside vocabulary"], (category_shares(t), category_shares(s))
        out[feature] = {"labels": labels, "training": [round(float(v), 6) for v in shares[0]],
                        "scored": [round(float(v), 6) for v in shares[1]],
                        "missing": [missing_share(train.rows, t.missing), missing_share(scored.rows, s.missing)]}
    return out


def numeric_bin_labels(bins: NumericBins) -> list[str]:
    cuts = [f"{c:.3g}" for c in bins.cuts]
    return [f"< {cuts[0]}", *(f"{a}-{b}" for a, b in zip(cuts[:-1], cuts[1:])), f">= {cuts[-1]}"]

