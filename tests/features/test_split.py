from pyspark.sql import functions as F

from dlpipe.features.split import assign_split


def test_split_fractions_and_stability_across_partitions(spark):
    base = spark.range(20000).withColumnRenamed("id", "row_id")
    one = assign_split(base.repartition(1), "row_id", 0.8, 0.1, seed=5)
    many = assign_split(base.repartition(9), "row_id", 0.8, 0.1, seed=5)
    assert one.exceptAll(many).count() == 0
    counts = {r["split"]: r["count"] for r in one.groupBy("split").count().collect()}
    assert abs(counts["train"] / 20000 - 0.8) < 0.01
    assert abs(counts["validation"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01
    other_seed = assign_split(base, "row_id", 0.8, 0.1, seed=6)
    assert one.exceptAll(other_seed).count() > 1000


def test_split_without_key_hashes_the_row(spark):
    df = spark.createDataFrame([(i, f"v{i % 7}") for i in range(500)], "a int, b string")
    first = assign_split(df, None, 0.5, 0.25, seed=1)
    again = assign_split(df.repartition(3), None, 0.5, 0.25, seed=1)
    assert first.exceptAll(again).count() == 0
    assert {r["split"] for r in first.select("split").distinct().collect()} == {"train", "validation", "test"}
    assert first.where(F.col("split").isNull()).count() == 0
