"""Binary classification metrics from a weighted score histogram that Spark computes.

One aggregation groups the scored rows into ``BINS`` equal-width score bins and sums, per bin, the weight of the
positive and the negative rows, the weighted scores, the log loss and the confusion-matrix cells. Only that
histogram (at most ``BINS`` rows) reaches the driver, however many rows were scored; the ROC curve, its area,
the calibration curve and the per-class score distributions all follow from it. The AUC treats the rows of one bin
as tied (half credit), so it differs from the exact rank AUC by at most the weight of positive-negative pairs that
share a bin: with 10,000 bins, below 1e-3 on the data here (``tests/pipelines/test_binary_metrics.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

BINS = 10_000
EPSILON = 1e-7  # log loss clips probabilities to [EPSILON, 1 - EPSILON]
B_REG = 10.0  # the AMS's regularisation term b_r, as in the ATLAS Higgs Machine Learning Challenge
AMS_WINDOW = 101  # bins the AMS scan is averaged over to choose the cut (about 0.01 of the score range)


def ams(s, b, b_r: float = B_REG):
    """The approximate median significance of ``s`` signal and ``b`` background events (weighted counts) that a
    selection keeps: sqrt(2((s + b + b_r) ln(1 + s / (b + b_r)) - s)) (Adam-Bourdarios et al., the HiggsML
    challenge's metric). Arrays give one value per selection."""
    s, b = np.asarray(s, dtype=float), np.asarray(b, dtype=float)
    return np.sqrt(2 * ((s + b + b_r) * np.log1p(s / (b + b_r)) - s))


@dataclass(frozen=True)
class ScoreHistogram:
    """Weighted counts of positive and negative rows per score bin (bin i spans edges[i]..edges[i + 1])."""

    edges: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    score_sums: np.ndarray  # the weighted sum of the scores in each bin

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """(false positive rates, true positive rates), from the highest threshold down, starting at (0, 0)."""
        tp = np.concatenate([[0.0], np.cumsum(self.positives[::-1])])
        fp = np.concatenate([[0.0], np.cumsum(self.negatives[::-1])])
        return fp / max(fp[-1], 1e-300), tp / max(tp[-1], 1e-300)

    def auc(self) -> float:
        fpr, tpr = self.roc()
        return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))

    def merged(self, groups: int) -> "ScoreHistogram":
        """The same histogram in ``groups`` wider bins (``groups`` must divide the number of bins)."""
        size = len(self.positives) // groups
        fold = lambda a: a.reshape(groups, size).sum(axis=1)  # noqa: E731
        return ScoreHistogram(self.edges[::size], fold(self.positives), fold(self.negatives), fold(self.score_sums))

    def ams_scan(self, signal_scale: float = 1.0, background_scale: float = 1.0,
                 b_r: float = B_REG) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, AMS): the AMS of keeping the rows scored at or above each bin's lower edge, positives as
        signal and negatives as background, their weights multiplied by the scales (to stand for a whole sample
        when these rows are a part of it)."""
        s = np.cumsum(self.positives[::-1])[::-1] * signal_scale
        b = np.cumsum(self.negatives[::-1])[::-1] * background_scale
        return self.edges[:-1], ams(s, b, b_r)

    def best_ams(self, signal_scale: float = 1.0, background_scale: float = 1.0,
                 window: int = AMS_WINDOW) -> tuple[float, float]:
        """(AMS, threshold) of the best cut. The cut is chosen on the scan averaged over ``window`` bins, so that
        a few heavy background events just above a threshold (a spike of the raw scan) do not decide it; of equal
        averages, the highest threshold. The AMS is the raw one at that cut."""
        thresholds, values = self.ams_scan(signal_scale, background_scale)
        smooth = np.convolve(values, np.ones(window) / window, mode="same") if window > 1 else values
        at = len(smooth) - 1 - int(np.argmax(smooth[::-1]))
        return float(values[at]), float(thresholds[at])

    def calibration(self, groups: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean score, observed positive fraction, weight) of each non-empty group of scores."""
        coarse = self.merged(groups)
        weight = coarse.positives + coarse.negatives
        used = weight > 0
        return coarse.score_sums[used] / weight[used], coarse.positives[used] / weight[used], weight[used]


@dataclass(frozen=True)
class BinaryMetrics:
    rows: int
    weight: float  # the total weight (the row count when unweighted)
    auc: float
    accuracy: float
    log_loss: float
    threshold: float
    true_positives: float  # confusion-matrix cells, weighted
    false_positives: float
    true_negatives: float
    false_negatives: float
    histogram: ScoreHistogram

    @property
    def precision(self) -> float | None:
        called = self.true_positives + self.false_positives
        return self.true_positives / called if called else None

    @property
    def recall(self) -> float | None:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else None


SLICE_BINS = 1_000  # a slice's histogram: coarser, so that fifty slices of a column reach the driver as 50,000 rows


def binary_metrics(df: DataFrame, score: str, label: str, threshold: float, weight: str | None = None,
                   bins: int = BINS) -> BinaryMetrics:
    """Metrics of ``score`` (higher: more likely positive) against the 0/1 ``label``, each row counted with its
    ``weight`` (1 without one), with rows called positive at ``score >= threshold``; rows without a score are
    left out. Two Spark jobs: the score range, then the histogram."""
    return sliced_binary_metrics(df, score, label, threshold, weight, {}, bins=bins)[0]


def sliced_binary_metrics(df: DataFrame, score: str, label: str, threshold: float, weight: str | None,
                          slices: dict[str, list[Column]], max_slices: int = 50, bins: int = BINS,
                          slice_bins: int = SLICE_BINS) -> tuple[BinaryMetrics, dict[str, dict[str, BinaryMetrics]]]:
    """``binary_metrics`` of all rows, and of each slice: for each named list of columns in ``slices``, the rows
    of each value combination, the ``max_slices`` largest by rows (ties by value). A slice is named by its values
    as JSON (``{"carrier":"UA"}``). The slices' histograms have ``slice_bins`` bins.

    Three Spark jobs whatever the number of slices: the score range (and the rows of every slice, when there are
    slices), then one histogram of every row and every kept slice (grouping sets over the bin and each slice's
    key)."""
    if bins % slice_bins:
        raise ValueError(f"slice_bins ({slice_bins}) must divide bins ({bins})")
    df = df.where(F.col(score).isNotNull())
    s = F.col(score).cast("double")
    low, high, rows = df.agg(F.min(s), F.max(s), F.count(F.lit(1))).first()
    if not rows:
        raise ValueError("no rows to compute metrics on")
    low, high = min(float(low), 0.0), max(float(high), 1.0)  # probabilities fill [0, 1]; other scores widen it
    y = F.col(label).cast("double")
    w: Column = F.col(weight).cast("double") if weight else F.lit(1.0)
    called = (s >= F.lit(threshold)).cast("double")
    p = F.least(F.greatest(s, F.lit(EPSILON)), F.lit(1 - EPSILON))
    cell = F.least(F.floor((s - F.lit(low)) / F.lit(high - low) * bins), F.lit(bins - 1)).cast("int")
    names = list(slices)
    keys = [F.to_json(F.struct(*columns)).alias(f"__slice{i}") for i, columns in enumerate(slices.values())]
    frame = df.select(s.alias("__s"), y.alias("__y"), w.alias("__w"), called.alias("__called"), p.alias("__p"),
                      cell.alias("__bin"), *keys)
    kept = largest_slices(frame, len(names), max_slices)
    for i in range(len(names)):  # a slice beyond the largest: grouped under null, and dropped
        key = F.col(f"__slice{i}")
        frame = frame.withColumn(f"__slice{i}", F.when(key.isin(kept[i]), key) if kept[i] else F.lit(None).cast("string"))
    frame = frame.withColumn("__coarse", (F.col("__bin") / F.lit(bins // slice_bins)).cast("int"))
    sets = [["__bin"], *[[f"__slice{i}", "__coarse"] for i in range(len(names))]]
    sy, sw = F.col("__y"), F.col("__w")
    per_bin = frame.groupingSets(sets, "__bin", "__coarse", *(f"__slice{i}" for i in range(len(names)))).agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(sw * sy).alias("positives"),
        F.sum(sw * (1 - sy)).alias("negatives"),
        F.sum(sw * F.col("__s")).alias("score_sum"),
        F.sum(-sw * (sy * F.log("__p") + (1 - sy) * F.log(1 - F.col("__p")))).alias("log_loss"),
        F.sum(sw * F.col("__called") * sy).alias("tp"),
        F.sum(sw * F.col("__called") * (1 - sy)).alias("fp"),
    ).collect()
    overall = [r for r in per_bin if r["__bin"] is not None]
    by_slice: dict[str, dict[str, list]] = {name: {} for name in names}
    for r in per_bin:
        for i, name in enumerate(names):
            if r[f"__slice{i}"] is not None:
                by_slice[name].setdefault(r[f"__slice{i}"], []).append(r)
    metrics = _from_bins(overall, "__bin", np.linspace(low, high, bins + 1), threshold)
    coarse = np.linspace(low, high, slice_bins + 1)
    return metrics, {name: {key: _from_bins(found, "__coarse", coarse, threshold) for key, found in sorted(
        by_slice[name].items(), key=lambda item: kept[names.index(name)].index(item[0]))} for name in names}


def largest_slices(frame: DataFrame, count: int, max_slices: int) -> list[list[str]]:
    """Per slice column ``__slice<i>`` of ``frame``, its ``max_slices`` most frequent keys, most rows first (one
    job for all of them)."""
    if not count:
        return []
    columns = [f"__slice{i}" for i in range(count)]
    found = frame.groupingSets([[c] for c in columns], *columns).agg(F.count(F.lit(1)).alias("n")).collect()
    out = []
    for c in columns:
        sizes = [(r[c], r["n"]) for r in found if r[c] is not None]
        out.append([key for key, _ in sorted(sizes, key=lambda kn: (-kn[1], kn[0]))[:max_slices]])
    return out


def _from_bins(rows: list, column: str, edges: np.ndarray, threshold: float) -> BinaryMetrics:
    """``BinaryMetrics`` from the per-bin sums of one grouping set."""
    size = len(edges) - 1
    positives, negatives, score_sums = np.zeros(size), np.zeros(size), np.zeros(size)
    for row in rows:
        positives[row[column]], negatives[row[column]], score_sums[row[column]] = (
            row["positives"], row["negatives"], row["score_sum"])
    histogram = ScoreHistogram(edges, positives, negatives, score_sums)
    total = float(positives.sum() + negatives.sum())
    tp, fp = sum(r["tp"] for r in rows), sum(r["fp"] for r in rows)
    fn, tn = float(positives.sum()) - tp, float(negatives.sum()) - fp
    auc = histogram.auc() if positives.sum() > 0 and negatives.sum() > 0 else float("nan")  # one class: no ranking
    return BinaryMetrics(
        rows=sum(r["rows"] for r in rows), weight=total, auc=auc, accuracy=(tp + tn) / total,
        log_loss=sum(r["log_loss"] for r in rows) / total, threshold=threshold,
        true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn, histogram=histogram,
    )
