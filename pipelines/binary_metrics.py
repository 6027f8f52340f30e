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


def binary_metrics(df: DataFrame, score: str, label: str, threshold: float, weight: str | None = None,
                   bins: int = BINS) -> BinaryMetrics:
    """Metrics of ``score`` (higher: more likely positive) against the 0/1 ``label``, each row counted with its
    ``weight`` (1 without one), with rows called positive at ``score >= threshold``; rows without a score are
    left out. Two Spark jobs: the score range, then the histogram."""
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
    per_bin = df.groupBy(cell.alias("bin")).agg(
        F.sum(w * y).alias("positives"),
        F.sum(w * (1 - y)).alias("negatives"),
        F.sum(w * s).alias("score_sum"),
        F.sum(-w * (y * F.log(p) + (1 - y) * F.log(1 - p))).alias("log_loss"),
        F.sum(w * called * y).alias("tp"),
        F.sum(w * called * (1 - y)).alias("fp"),
    ).collect()
    positives, negatives, score_sums = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for row in per_bin:
        positives[row["bin"]], negatives[row["bin"]], score_sums[row["bin"]] = (
            row["positives"], row["negatives"], row["score_sum"])
    histogram = ScoreHistogram(np.linspace(low, high, bins + 1), positives, negatives, score_sums)
    total = float(positives.sum() + negatives.sum())
    tp, fp = sum(r["tp"] for r in per_bin), sum(r["fp"] for r in per_bin)
    fn, tn = float(positives.sum()) - tp, float(negatives.sum()) - fp
    return BinaryMetrics(
        rows=int(rows), weight=total, auc=histogram.auc(), accuracy=(tp + tn) / total,
        log_loss=sum(r["log_loss"] for r in per_bin) / total, threshold=threshold,
        true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn, histogram=histogram,
    )
