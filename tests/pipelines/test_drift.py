"""Drift statistics (pipelines.drift) against hand computations and scipy, and the profile counts Spark makes
(features.profile) against counts made in NumPy, also when a task fails and is retried."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from dlpipe.features.profile import (CategoryBins, CategoryCounts, NumericBins, NumericCounts, Profile, ProfileBins,
                                     category_bins)
from dlpipe.features.spec import CategoricalFeature, FeatureSpec, LabelSpec, NumericFeature
from dlpipe.pipelines import drift
from dlpipe.pipelines.config.schema import DriftConfig
from tests.conftest import REPO


def numeric_counts(bins: NumericBins, values: np.ndarray) -> NumericCounts:
    """What features.profile counts, in NumPy."""
    present = values[np.isfinite(values)]
    return NumericCounts(int(len(values) - len(present)), tuple(int((present < c).sum()) for c in bins.cuts),
                         tuple(float(np.maximum(c - present, 0).sum()) for c in bins.cuts), int(len(present)),
                         float(np.maximum(present - bins.high, 0).sum()))


def bins_of(training: np.ndarray) -> NumericBins:
    present = training[np.isfinite(training)]
    return NumericBins(tuple(sorted(set(np.quantile(present, np.arange(1, 10) / 10)))), float(present.min()),
                       float(present.max()), float(present.std()))


def test_psi_and_jensen_shannon_by_hand_and_against_scipy():
    expected, actual = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert drift.psi(expected, actual) == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    assert drift.psi(expected, expected) == 0.0
    p, q = np.array([0.7, 0.2, 0.1, 0.0]), np.array([0.5, 0.2, 0.1, 0.2])
    assert drift.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-12)
    assert drift.jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.sqrt(math.log(2)))


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.5, 1.0), (0.0, 2.0), (3.0, 1.0), (-1.0, 0.5)])
def test_binned_wasserstein_is_close_to_the_exact_one(shift, scale):
    """Training N(0, 1); scored N(shift, scale). The exact distance of the samples (scipy) over the training
    deviation, against the one from the profile: within 0.01, also when most values lie beyond the training
    range (shift 3) and when the distributions cross (other scales)."""
    rng = np.random.default_rng(5)
    training, scored = rng.normal(0, 1, 200_000), rng.normal(shift, scale, 100_000)
    bins = bins_of(training)
    train, found = numeric_counts(bins, training), numeric_counts(bins, scored)
    exact = wasserstein_distance(training, scored) / training.std()
    assert drift.wasserstein(bins, train, found) == pytest.approx(exact, abs=0.01)


def test_values_that_overflow_the_sums_alert_instead_of_giving_nan():
    """Scored values near the largest double overflow the profile's sums to infinity, on both sides of the
    training range: the Wasserstein distance is infinite and alerts (it was NaN, below every threshold)."""
    rng = np.random.default_rng(4)
    training = rng.normal(0, 1, 5000)
    scored = rng.normal(0, 1, 5000)
    scored[:3], scored[3:6] = 1.7e308, -1.7e308
    bins = bins_of(training)
    with np.errstate(over="ignore"):
        train, found = numeric_counts(bins, training), numeric_counts(bins, scored)
    assert not np.isfinite([*found.shortfall, found.over]).all()
    assert drift.wasserstein(bins, train, found) == math.inf
    measures = drift.measure(ProfileBins({"x": bins}, {}), Profile(5000, {"x": train}, {}),
                             Profile(5000, {"x": found}, {}), DriftConfig())
    assert {(m.statistic, m.alert) for m in measures} == {("psi", False), ("wasserstein", True),
                                                          ("missing_share", False)}
    assert "wasserstein inf" in drift.summary(measures, "db.drift", "r1")


def test_a_shifted_feature_alerts_alone_and_missing_values_count_either_way():
    rng = np.random.default_rng(9)
    a, b = rng.lognormal(0, 0.5, 5000), rng.normal(0, 1, 5000)
    bins = ProfileBins({"a": bins_of(a), "b": bins_of(b)}, {})
    train = Profile(5000, {"a": numeric_counts(bins.numeric["a"], a), "b": numeric_counts(bins.numeric["b"], b)}, {})
    a2 = rng.lognormal(0, 0.5, 4000) * 1.5   # an energy scale off by half
    b2 = rng.normal(0, 1, 4000)
    b2[:800] = np.nan                         # a fifth of b lost
    scored = Profile(4000, {"a": numeric_counts(bins.numeric["a"], a2),
                            "b": numeric_counts(bins.numeric["b"], b2)}, {})
    measures = drift.measure(bins, train, scored, DriftConfig())
    alerts = {(m.feature, m.statistic) for m in drift.alerts(measures)}
    assert alerts == {("a", "psi"), ("a", "wasserstein"), ("b", "missing_share")}
    (missing,) = [m for m in measures if (m.feature, m.statistic) == ("b", "missing_share")]
    assert missing.value == pytest.approx(0.2)
    # per-feature thresholds override the global ones
    relaxed = DriftConfig(features={"a": {"psi": 5.0, "wasserstein": 5.0}})
    assert {m.feature for m in drift.alerts(drift.measure(bins, train, scored, relaxed))} == {"b"}


def test_categorical_shares_unseen_values_and_the_summary_lines():
    bins = ProfileBins({}, {"c": category_bins(("x", "y", "z", None))})
    train = Profile(100, {}, {"c": CategoryCounts(10, (50, 30), 8, 2)})
    scored = Profile(100, {}, {"c": CategoryCounts(10, (20, 30), 8, 32)})
    measures = {m.statistic: m for m in drift.measure(bins, train, scored, DriftConfig())}
    assert measures["unseen_share"].value == pytest.approx(32 / 90 - 2 / 90)
    assert measures["jensen_shannon"].value == pytest.approx(
        jensenshannon([50 / 90, 30 / 90, 8 / 90, 2 / 90], [20 / 90, 30 / 90, 8 / 90, 32 / 90]))
    assert measures["missing_share"].value == 0.0 and not measures["missing_share"].alert
    text = drift.summary(list(measures.values()), "db.drift", "r1")
    assert text.splitlines()[0] == "  drift: 1 feature crossed a threshold (details: db.drift, run r1):"
    assert text.splitlines()[1].startswith("    c: ")
    assert "unseen_share +0.333" in text and "jensen_shannon 0." in text


SPEC = FeatureSpec(LabelSpec("y"), (NumericFeature("x"), NumericFeature("l", transform="log")),
                   (CategoricalFeature("c"),), ("id",))


def fitted_on(df):
    from dlpipe.features.fit import fit_features

    return fit_features(df, SPEC, key="id")[0]


def test_spark_tallies_the_profile_numpy_counts(spark):
    """features.tally.tally_rows (what featurize runs on the training split; infer counts its batches the same
    way) counts featurized rows: against NumPy's counts of the raw values, a null, NaN and infinity among them,
    values <= -1 missing for the log column, and empty text missing for the categorical one. A value equal to a
    cut lands where the raw value would."""
    from dlpipe.features.tally import tally_rows

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 400)
    x[::17], x[5], x[6] = np.nan, np.inf, -np.inf
    x[20:30] = 0.5  # on a cut
    l = rng.lognormal(0, 1, 400) - 1.5
    c = rng.choice(["a", "b", "c", "d", "", None], 400, p=[0.4, 0.2, 0.15, 0.15, 0.05, 0.05])
    rows = [(i, None if i == 7 else float(x[i]), float(l[i]), None if c[i] is None else str(c[i]), i % 2)
            for i in range(400)]
    df = spark.createDataFrame(rows, "id int, x double, l double, c string, y int").repartition(3)
    bins = ProfileBins({"x": NumericBins((-0.5, 0.0, 0.5), -1.0, 1.0, 1.0), "l": NumericBins((0.0, 1.0), -0.5, 2.0, 1.0)},
                       {"c": CategoryBins(("a", "b"), ("a", "b", "c"))})  # c: in the vocabulary, not tracked
    found = tally_rows(df, fitted_on(df.where("l > -1")), bins)  # fitting refuses log values <= -1
    x[7] = np.nan
    assert found.rows == 400
    for column, values in (("x", np.where(np.isfinite(x), x, np.nan)), ("l", np.where(l > -1, l, np.nan))):
        want, got = numeric_counts(bins.numeric[column], values), found.numeric[column]
        assert (got.below, got.missing, got.present) == (want.below, want.missing, want.present)
        assert got.shortfall == pytest.approx(want.shortfall, rel=1e-6) and got.over == pytest.approx(want.over, rel=1e-6)
    present = [v for v in c if v not in (None, "")]
    assert found.categorical["c"] == CategoryCounts(len(c) - len(present), (present.count("a"), present.count("b")),
                                                    present.count("c"), present.count("d"))


def test_clipped_and_piecewise_linear_features_are_counted_from_their_features(spark):
    """A clipped feature is counted as the model sees it, a value beyond a clip bound at the bound; a
    piecewise-linear feature's values are read back from its slots, below its first edge and above its last too.
    Fitted on one table, counted on another that is wider."""
    from dlpipe.features.fit import fit_features
    from dlpipe.features.tally import tally_rows

    rng = np.random.default_rng(6)
    x = np.round(rng.normal(0, 1, 2000), 2)
    wider = np.round(x * 1.5 + 0.3, 2)

    def table(values):
        return spark.createDataFrame([(i, float(v), float(v), i % 2) for i, v in enumerate(values)],
                                     "id int, a double, p double, y int")

    spec = FeatureSpec(LabelSpec("y"), (NumericFeature("a", clip=(0.05, 0.95)),
                                        NumericFeature("p", transform="ple", bins=6)), (), ("id",))
    fitted = fit_features(table(x), spec, key="id")[0]
    low, high = fitted.numeric["a"].clip_bounds
    edges = fitted.numeric["p"].edges
    assert wider.min() < edges[0] and wider.max() > edges[-1]
    cuts = NumericBins((-1.0, edges[1], 0.0, 0.5), -2.0, float(x.max()) + 1.0, 1.0)
    found = tally_rows(table(wider), fitted, ProfileBins({"a": cuts, "p": cuts}, {}))
    for column, seen in (("a", np.clip(wider, low, high)), ("p", wider)):
        want, got = numeric_counts(cuts, seen), found.numeric[column]
        assert (got.below, got.present) == (want.below, want.present), column
        assert got.shortfall == pytest.approx(want.shortfall, rel=1e-5), column
        assert got.over == pytest.approx(want.over, rel=1e-5, abs=1e-6), column


def test_a_sample_is_drawn_per_batch_and_counted_as_its_rows_are(spark):
    """With a fraction, each task draws its rows from a generator seeded by its partition: the same rows in every
    job over the same partitions, about that share of them, counted exactly as NumPy counts those rows."""
    from dlpipe.features.apply import scorer_input
    from dlpipe.features.profile import PROFILE_SEED
    from dlpipe.features.tally import Tally, accumulator, counting, feature_space, with_missing_words

    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 4000)
    rows = [(i, float(x[i]), float(i % 5), "ab"[i % 2], i % 2) for i in range(4000)]
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), "id int, x double, l double, c string, y int")
    fitted = fitted_on(df)
    bins = ProfileBins({"x": NumericBins((-0.5, 0.0, 0.5), -1.0, 1.0, 1.0), "l": NumericBins((2.0,), 0.0, 4.0, 1.0)},
                       {"c": category_bins(("a", "b"))})
    space = feature_space(spark, fitted, bins)
    scored = scorer_input(with_missing_words(df, fitted), fitted.schema, space.words)

    def profiled():
        total = accumulator(spark.sparkContext, space, bins)
        scored.mapInArrow(counting(space, bins, total, 0.25), "counted int").write.format("noop").mode(
            "overwrite").save()
        assert isinstance(total.value, Tally)
        return total.value.profile()

    found = profiled()
    assert profiled() == found
    sizes = df.rdd.glom().map(len).collect()  # the partitions hold the rows in id order
    kept = np.concatenate([np.random.default_rng([PROFILE_SEED, p]).random(n) < 0.25 for p, n in enumerate(sizes)])
    assert 800 < found.rows == kept.sum() < 1200
    want = numeric_counts(bins.numeric["x"], x[kept])
    assert found.numeric["x"].below == want.below
    assert found.numeric["x"].shortfall == pytest.approx(want.shortfall, rel=1e-6)


RETRIED = """
import dataclasses, json, sys
from pyspark import TaskContext
from pyspark.sql import functions as F
from dlpipe.features.apply import scorer_input
from dlpipe.features.tally import tally_rows, with_missing_words
from dlpipe.pipelines.config import Config, SparkConfig
from dlpipe.pipelines.session import build_session
from dlpipe.pipelines.infer import DriftTally
from tests.pipelines.test_drift import fitted_on, retried_bins

spark = build_session(Config(data_dir=sys.argv[1], spark=SparkConfig(master="local[2,3]", shuffle_partitions=2)))
df = spark.range(0, 20000, numPartitions=4).selectExpr(  # partition 1: ids 5,000 to 9,999
    "CAST(id AS int) AS id", "(id % 50) / 10.0 AS x", "CAST(id % 7 AS double) AS l",
    "substr('abc', CAST(id % 3 AS int) + 1, 1) AS c", "CAST(id % 2 AS int) AS y")
fitted = fitted_on(df)
fitted = dataclasses.replace(fitted, training_profile=dataclasses.replace(fitted.training_profile,
                                                                          numeric_bins=retried_bins().numeric))

def passthrough(batches):
    for batch in batches:
        yield batch.select(["id"])

@F.udf("int")
def fail_once(i):
    context = TaskContext.get()
    if context.partitionId() == 1 and context.attemptNumber() == 0 and i == 9999:
        raise RuntimeError("injected failure")  # the partition's last row: its batches were all counted
    return i

tally = DriftTally(spark, fitted, sample_rows=10**9)
scored = scorer_input(with_missing_words(df, fitted), fitted.schema, ("id", *tally.space.words)).mapInArrow(
    tally.counting(passthrough), "id int")
scored.withColumn("id", fail_once("id")).write.format("delta").save(sys.argv[1] + "/out")
exact = tally_rows(df, fitted, fitted.profile_bins)
print(json.dumps({"observed": tally.total.value.profile().to_json(), "exact": exact.to_json()}))
"""


def retried_bins() -> ProfileBins:
    return ProfileBins({"x": NumericBins((1.0, 2.5), 0.0, 4.0, 1.0), "l": NumericBins((3.0,), 0.0, 6.0, 2.0)},
                       {"c": category_bins(("a", "b"))})


def test_a_retried_task_is_counted_once(tmp_path):
    """infer's tally is a Spark accumulator added to by the tasks of the job that writes: a task that counted
    its rows, then failed and was retried, adds its rows once (local[2,3]: three attempts per task)."""
    out = subprocess.run([sys.executable, "-c", RETRIED, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "injected failure" in out.stderr  # the first attempt did fail
    found = json.loads(out.stdout.strip().splitlines()[-1])
    observed, exact = found["observed"], found["exact"]
    assert exact["rows"] == 20000
    same_counts_and_sums(observed, exact)


def same_counts_and_sums(observed, exact, where: str = "profile") -> None:
    """Counts equal, sums within a relative 1e-12: Spark merges the tasks' partial sums in the order they finish."""
    if isinstance(exact, dict):
        assert sorted(observed) == sorted(exact), where
        for key in exact:
            same_counts_and_sums(observed[key], exact[key], f"{where}.{key}")
    elif isinstance(exact, list):
        assert len(observed) == len(exact), where
        for i, (o, e) in enumerate(zip(observed, exact)):
            same_counts_and_sums(o, e, f"{where}[{i}]")
    elif isinstance(exact, float):
        assert observed == pytest.approx(exact, rel=1e-12, abs=1e-300), where
    else:
        assert observed == exact, where


def test_a_tally_counts_the_same_in_chunks_and_at_once(monkeypatch):
    """Rows wait and are counted CHUNK at a time: any chunk size gives the same profile, and merging two
    tallies counts what either still holds. (Batches as the scorer gets them: two scalar features in the dense
    list, the categorical's ids, the missing flags.)"""
    import pyarrow as pa

    import dlpipe.features.tally as tally
    from dlpipe.features.schema import DENSE_INPUT

    rng = np.random.default_rng(8)
    bins = retried_bins()
    space = tally.FeatureSpace(
        {"x": tally.NumericSpace(0, 1, bins.numeric["x"].cuts), "l": tally.NumericSpace(1, 1, bins.numeric["l"].cuts)},
        {"c": tally.CategorySpace("c_index", 0, 0, (3, 0, 1))}, 2, (tally.missing_word(0),))

    def batch(n):
        x, l = rng.normal(2, 1, n), rng.uniform(0, 6, n)
        values = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()),
                                          pa.array(np.column_stack([x, l]).ravel(), pa.float32()))
        missing = rng.integers(0, 8, n)  # bits: x, l, c
        return pa.RecordBatch.from_arrays([values, pa.array(rng.integers(0, 3, n), pa.int32()), pa.array(missing),
                                           pa.array(x)], names=[DENSE_INPUT, "c_index", tally.missing_word(0), "other"])

    batches = [batch(n) for n in (50, 7, 0, 120, 33, 3, 4)]  # the last two wait in either tally at the merge
    at_once = tally.Tally(space, bins)
    for b in batches:
        at_once.add(b)
    monkeypatch.setattr(tally, "CHUNK", 5)
    first, second = tally.Tally(space, bins), tally.Tally(space, bins)
    for i, b in enumerate(batches):
        (first if i % 2 else second).add(b)
    merged, whole = (first + second).profile(), at_once.profile()
    assert merged.rows == whole.rows == sum(b.num_rows for b in batches)
    assert merged.categorical == whole.categorical
    flags = np.concatenate([b.column(2).to_numpy() for b in batches])
    assert whole.categorical["c"].missing == ((flags & 4) > 0).sum()
    for column, counts in whole.numeric.items():  # sums in another order: equal to rounding
        got = merged.numeric[column]
        assert (got.below, got.missing, got.present) == (counts.below, counts.missing, counts.present)
        assert got.shortfall == pytest.approx(counts.shortfall, rel=1e-12) and got.over == pytest.approx(counts.over)
    assert whole.numeric["x"].missing == ((flags & 1) > 0).sum() and whole.numeric["l"].missing == ((flags & 2) > 0).sum()
