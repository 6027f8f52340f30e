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

from dlpipe.features.profile import (CategoryBins, CategoryCounts, NumericBins, NumericCounts, Profile, ProfileBins, aggregates,
                                     category_bins, read)
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


def test_spark_counts_the_profile_numpy_counts(spark):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 400)
    x[::17] = np.nan
    l = rng.lognormal(0, 1, 400) - 1.5  # some values <= -1: missing for log
    c = rng.choice(["a", "b", "c", "d", "", None], 400, p=[0.4, 0.2, 0.15, 0.15, 0.05, 0.05])
    rows = [(i, float(x[i]), float(l[i]), None if c[i] is None else str(c[i]), i % 2) for i in range(400)]
    df = spark.createDataFrame(rows, "id int, x double, l double, c string, y int")
    bins = ProfileBins({"x": NumericBins((-0.5, 0.0, 0.5), -1.0, 1.0, 1.0), "l": NumericBins((0.0, 1.0), -0.5, 2.0, 1.0)},
                       {"c": CategoryBins(("a", "b"), ("a", "b", "c"))})  # c: in the vocabulary, not tracked
    found = read(SPEC, bins, df.agg(*aggregates(SPEC, bins)).first())
    log_values = np.where(l > -1, l, np.nan)
    assert found.rows == 400
    want = numeric_counts(bins.numeric["x"], x)
    assert (found.numeric["x"].below, found.numeric["x"].missing) == (want.below, want.missing)
    assert found.numeric["x"].shortfall == pytest.approx(want.shortfall)
    assert found.numeric["x"].over == pytest.approx(want.over)
    assert found.numeric["l"].below == numeric_counts(bins.numeric["l"], log_values).below
    assert found.numeric["l"].shortfall == pytest.approx(numeric_counts(bins.numeric["l"], log_values).shortfall)
    assert found.numeric["l"].missing == int((l <= -1).sum())
    present = [v for v in c if v not in (None, "")]
    assert found.categorical["c"] == CategoryCounts(len(c) - len(present), (present.count("a"), present.count("b")),
                                                    present.count("c"), present.count("d"))


RETRIED = """
import json, sys
import numpy as np
from pyspark import TaskContext
from pyspark.sql import Observation
from pyspark.sql import functions as F
from dlpipe.pipelines.config import Config, SparkConfig
from dlpipe.pipelines.session import build_session
from dlpipe.features.profile import aggregates, read
from tests.pipelines.test_drift import SPEC, retried_bins

spark = build_session(Config(data_dir=sys.argv[1], spark=SparkConfig(master="local[2,3]", shuffle_partitions=2)))
rows = [(i, float(i % 50) / 10, float(i % 7), "abc"[i % 3], i % 2) for i in range(20000)]
df = spark.createDataFrame(rows, "id int, x double, l double, c string, y int").repartition(4)

@F.udf("int")
def fail_first_attempt(i):
    context = TaskContext.get()
    if context.partitionId() == 1 and context.attemptNumber() == 0 and i % 1000 == 999:
        raise RuntimeError("injected failure")  # after some rows of the partition were counted
    return i

counts = Observation("profile")
observed = df.observe(counts, *aggregates(SPEC, retried_bins())).withColumn("id", fail_first_attempt("id"))
observed.write.format("delta").save(sys.argv[1] + "/out")
got = read(SPEC, retried_bins(), counts.get)
exact = read(SPEC, retried_bins(), df.agg(*aggregates(SPEC, retried_bins())).first())
print(json.dumps({"observed": got.to_json(), "exact": exact.to_json()}))
"""


def retried_bins() -> ProfileBins:
    return ProfileBins({"x": NumericBins((1.0, 2.5), 0.0, 4.0, 1.0), "l": NumericBins((3.0,), 0.0, 6.0, 2.0)},
                       {"c": category_bins(("a", "b"))})


def test_a_retried_task_is_counted_once(tmp_path):
    """The profile is counted as Spark's observed metrics of the job that writes: a task that fails midway and
    is retried adds its rows once (local[2,3]: three attempts per task)."""
    out = subprocess.run([sys.executable, "-c", RETRIED, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "injected failure" in out.stderr  # the first attempt did fail
    found = json.loads(out.stdout.strip().splitlines()[-1])
    observed, exact = found["observed"], found["exact"]
    assert exact["rows"] == observed["rows"] == 20000 and observed["categorical"] == exact["categorical"]
    for column, counts in exact["numeric"].items():
        got = observed["numeric"][column]
        assert (got["below"], got["present"]) == (counts["below"], counts["present"])
        assert got["shortfall"] == pytest.approx(counts["shortfall"], rel=1e-12)  # summed in another order
