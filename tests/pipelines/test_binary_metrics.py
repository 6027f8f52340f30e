"""The histogram metrics that evaluate computes in Spark, against scikit-learn on the same rows."""
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

from pyspark.sql import functions as F

from dlpipe.pipelines.binary_metrics import ams, binary_metrics, sliced_binary_metrics


@pytest.fixture(scope="module")
def scored(spark):
    rng = np.random.default_rng(3)
    n = 20_000
    label = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.4 + 0.2 * label, 0.2), 0, 1).round(4)  # ties, and scores of exactly 0 and 1
    weight = rng.uniform(0.1, 3.0, n)
    df = spark.createDataFrame([(float(s), float(y), float(w)) for s, y, w in zip(score, label, weight)],
                               "score double, label double, weight double")
    return df, score, label, weight


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_equal_scikit_learn(scored, weighted):
    df, score, label, weight = scored
    w = weight if weighted else None
    metrics = binary_metrics(df, "score", "label", 0.5, "weight" if weighted else None)
    called = (score >= 0.5).astype(int)
    assert metrics.rows == len(score)
    assert metrics.auc == pytest.approx(roc_auc_score(label, score, sample_weight=w), abs=1e-3)
    assert metrics.accuracy == pytest.approx(accuracy_score(label, called, sample_weight=w), abs=1e-9)
    assert metrics.log_loss == pytest.approx(log_loss(label, np.clip(score, 1e-7, 1 - 1e-7), sample_weight=w),
                                             rel=1e-9)
    tn, fp, fn, tp = confusion_matrix(label, called, sample_weight=w).ravel()
    assert (metrics.true_negatives, metrics.false_positives, metrics.false_negatives, metrics.true_positives) == \
        pytest.approx((tn, fp, fn, tp), rel=1e-9)
    assert metrics.weight == pytest.approx(weight.sum() if weighted else len(score))


def test_calibration_and_roc_shapes(scored):
    df, score, label, _ = scored
    histogram = binary_metrics(df, "score", "label", 0.5).histogram
    fpr, tpr = histogram.roc()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    predicted, observed, weight = histogram.calibration(10)
    assert weight.sum() == len(score)
    top = score >= 0.9
    assert observed[-1] == pytest.approx(label[top].mean())
    assert predicted[-1] == pytest.approx(score[top].mean())


def test_perfect_and_inverted_scores(spark):
    df = spark.createDataFrame([(0.1, 0.0), (0.2, 0.0), (0.8, 1.0), (0.9, 1.0), (None, 1.0)],
                               "score double, label double")
    perfect = binary_metrics(df, "score", "label", 0.5)
    assert perfect.auc == pytest.approx(1.0) and perfect.rows == 4  # the row without a score is left out
    inverted = df.selectExpr("1 - score AS score", "label")
    assert binary_metrics(inverted, "score", "label", 0.5).auc == pytest.approx(0.0)


def test_ams_by_hand_and_its_scan_over_thresholds(spark):
    """AMS = sqrt(2((s + b + b_r) ln(1 + s / (b + b_r)) - s)), b_r = 10: by hand, then the histogram's scan
    against every cut on a small weighted table worked out row by row."""
    assert float(ams(3.0, 1.0)) == pytest.approx(0.8674892453932012, rel=1e-12)  # sqrt(2(14 ln(14/11) - 3))
    assert float(ams(0.0, 5.0)) == 0.0
    rows = [(0.95, 1.0, 40.0), (0.9, 0.0, 2.0), (0.8, 1.0, 35.0), (0.7, 0.0, 30.0), (0.6, 1.0, 20.0),
            (0.4, 0.0, 80.0), (0.3, 1.0, 5.0), (0.1, 0.0, 120.0)]  # (score, signal?, event weight)
    df = spark.createDataFrame(rows, "score double, label double, weight double")
    histogram = binary_metrics(df, "score", "label", 0.5, "weight").histogram
    by_hand = {}
    for cut, _, _ in rows:  # keep the rows scored at or above the cut
        s = sum(w for score, y, w in rows if score >= cut and y == 1)
        b = sum(w for score, y, w in rows if score >= cut and y == 0)
        by_hand[cut] = math.sqrt(2 * ((s + b + 10) * math.log(1 + s / (b + 10)) - s))
    best = max(by_hand, key=by_hand.get)  # 0.8: s = 75, b = 2
    assert best == 0.8 and by_hand[best] == pytest.approx(13.9533, abs=1e-4)
    value, threshold = histogram.best_ams()
    assert value == pytest.approx(by_hand[best], rel=1e-12)
    assert 0.7 < threshold <= best  # every cut between the scores 0.7 and 0.8 keeps the same rows
    assert histogram.best_ams(window=1)[1] == pytest.approx(0.8, abs=1e-4)  # unsmoothed: at the lowest kept score
    thresholds, values = histogram.ams_scan()
    assert len(thresholds) == len(values) and values.max() == value
    # the weights scaled (these rows a tenth of the sample): s and b ten times larger
    assert histogram.best_ams(10.0, 10.0)[0] == pytest.approx(float(ams(750.0, 20.0)), rel=1e-12)


def test_slices_equal_scikit_learn_on_each_slices_rows_in_one_histogram_pass(spark):
    """Four groups of ``g`` (one of them null) in which the scores separate the classes differently, and 12 values
    of ``h``; the slices by g, and by (g, h) kept to the 5 largest. Each slice's metrics against scikit-learn on
    its own rows."""
    rng = np.random.default_rng(11)
    n = 12_000
    g = rng.choice(["a", "b", "c", None], n, p=[0.5, 0.25, 0.15, 0.1])
    h = rng.integers(0, 12, n)
    label = rng.integers(0, 2, n)
    spread = np.select([g == "a", g == "b", g == "c"], [0.3, 0.1, 0.0], 0.2)  # c: scores carry nothing
    score = np.clip(rng.normal(0.4 + spread * label, 0.2), 0, 1)
    df = spark.createDataFrame([(float(s), float(y), None if k is None else str(k), int(j))
                                for s, y, k, j in zip(score, label, g, h)], "score double, label double, g string, h int")
    overall, slices = sliced_binary_metrics(df, "score", "label", 0.5, None,
                                            {"g": [F.col("g")], "g, h": [F.col("g"), F.col("h")]}, max_slices=5)
    assert overall.rows == n and overall.auc == pytest.approx(roc_auc_score(label, score), abs=1e-3)
    assert list(slices["g"]) == ['{"g":"a"}', '{"g":"b"}', '{"g":"c"}', "{}"]  # most rows first; null g: {}
    for key, value in (('{"g":"a"}', "a"), ('{"g":"c"}', "c"), ("{}", None)):
        rows = g == value if value else np.array([v is None for v in g])
        found = slices["g"][key]
        assert found.rows == rows.sum()
        assert found.auc == pytest.approx(roc_auc_score(label[rows], score[rows]), abs=2e-3)
        assert found.accuracy == pytest.approx(((score[rows] >= 0.5) == label[rows]).mean(), abs=1e-12)
    pairs = slices["g, h"]
    sizes = {(a, b): ((g == a) & (h == b)).sum() for a in ("a", "b", "c") for b in range(12)}
    assert len(pairs) == 5 and [p.rows for p in pairs.values()] == sorted(sizes.values(), reverse=True)[:5]
