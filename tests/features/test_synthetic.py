import pytest
from pyspark.sql import functions as F

from dlpipe.features.synthetic import CATEGORICAL, HIGH_LEVEL, LOW_LEVEL, generate_events


def test_columns_and_types(spark):
    df = generate_events(spark, rows=10, seed=1, partitions=2, null_rate=0.0)
    assert df.columns == ["row_id", *LOW_LEVEL, *CATEGORICAL, *HIGH_LEVEL, "label", "true_prob", "event_weight"]
    assert len(LOW_LEVEL) == 21 and len(HIGH_LEVEL) == 7 and len(CATEGORICAL) == 3
    types = dict(df.dtypes)
    assert types["row_id"] == "bigint" and types["label"] == "int" and types["true_prob"] == "double"
    assert all(types[c] == "double" for c in LOW_LEVEL + HIGH_LEVEL)
    assert all(types[c] == "string" for c in CATEGORICAL)


def test_same_seed_same_rows_regardless_of_partitions(spark):
    a = generate_events(spark, rows=3000, seed=11, partitions=1, null_rate=0.05)
    b = generate_events(spark, rows=3000, seed=11, partitions=7, null_rate=0.05)
    assert a.count() == b.count() == 3000
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0
    c = generate_events(spark, rows=3000, seed=12, partitions=1, null_rate=0.05)
    assert a.exceptAll(c).count() == 3000


def test_label_rate_nulls_cardinality_and_signal(spark):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    rows, null_rate = 20000, 0.05
    df = generate_events(spark, rows=rows, seed=3, partitions=4, null_rate=null_rate).cache()
    stats = df.agg(
        F.avg("label").alias("label_rate"),
        F.avg("true_prob").alias("mean_prob"),
        *[F.avg(F.col(c).isNull().cast("double")).alias(f"null_{c}") for c in ("lepton_pt", "trigger_id")],
        F.avg(F.col("m_jj").isNull().cast("double")).alias("null_m_jj"),
        *[F.countDistinct(c).alias(f"n_{c}") for c in CATEGORICAL],
        *[F.sum(F.when(F.col("label") == y, F.col("event_weight"))).alias(f"weight_{y}") for y in (0, 1)],
    ).first()
    assert 0.45 < stats["label_rate"] < 0.58
    assert abs(stats["label_rate"] - stats["mean_prob"]) < 0.015  # labels are drawn from true_prob
    assert stats["null_lepton_pt"] == pytest.approx(null_rate, abs=0.006)
    assert stats["null_trigger_id"] == pytest.approx(null_rate, abs=0.006)
    assert stats["null_m_jj"] == 0.0
    assert 400 < stats["weight_0"] / stats["weight_1"] < 700  # rare signal, as in a physics sample
    assert stats["n_detector_region"] == 5
    assert 95 <= stats["n_run_period"] <= 100
    assert stats["n_trigger_id"] > 3000  # ~10,000 values, Zipf-like: many are rare at this size
    # Skew: the most frequent trigger covers far more than a uniform share.
    top = df.groupBy("trigger_id").count().orderBy(F.desc("count")).first()["count"]
    assert top > 20 * rows / 10000
    bayes = BinaryClassificationEvaluator(rawPredictionCol="true_prob", labelCol="label").evaluate(
        df.withColumn("label", F.col("label").cast("double"))
    )
    assert 0.75 < bayes < 0.85
    df.unpersist()
