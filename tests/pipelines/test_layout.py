from pyspark.sql import functions as F

from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.pipelines.layout import FILES_PER_WORKER, TARGET_FILE_BYTES, files_per_split, lay_out, partition_keys, row_bytes


def test_files_per_split():
    # small data: 4 training files per worker, 1 validation/test file per worker
    assert files_per_split({"train": 8000, "validation": 1000, "test": 1000}, 2, 100) == {"train": 8, "validation": 2, "test": 2}
    # large data: one file per TARGET_FILE_BYTES
    rows_per_file = TARGET_FILE_BYTES // 128
    big = files_per_split({"train": 100 * rows_per_file, "validation": 3 * rows_per_file, "test": 0}, 2, 128)
    assert big == {"train": 100, "validation": 3, "test": 0}
    # never more files than rows
    assert files_per_split({"train": 5, "validation": 1, "test": 0}, 4, 100) == {"train": 5, "validation": 1, "test": 0}
    assert FILES_PER_WORKER == 4


def test_row_bytes_counts_vector_widths():
    schema = FeatureSchema("y", (FeatureColumn("a", "dense", "float32"), FeatureColumn("v", "dense", "float32", (5,)),
                                 FeatureColumn("i", "index", "int32", (), 10)), ("id",))
    assert row_bytes(schema) == 4 * (1 + 5 + 1 + 1) + 8


def test_partition_keys_land_one_per_partition(spark):
    keys = partition_keys(spark, 13)
    df = spark.createDataFrame([(k,) for k in keys], "k long").repartition(13, "k")
    placed = {r["k"]: r["p"] for r in df.select("k", F.spark_partition_id().alias("p")).collect()}
    assert [placed[k] for k in keys] == list(range(13))


def test_lay_out_gives_each_file_one_split(spark):
    df = spark.range(3000).select(
        F.col("id").alias("row_id"),
        F.when(F.col("id") % 10 < 8, "train").when(F.col("id") % 10 == 8, "validation").otherwise("test").alias("split"),
    )
    files = {"train": 5, "validation": 2, "test": 1}
    laid = lay_out(df, files, "row_id", ["row_id"], input_partitions=df.rdd.getNumPartitions())
    per_partition = laid.groupBy(F.spark_partition_id().alias("p")).agg(
        F.countDistinct("split").alias("splits"), F.first("split").alias("split"), F.count(F.lit(1)).alias("rows"))
    rows = per_partition.collect()
    assert laid.rdd.getNumPartitions() == 8 and len(rows) == 8
    assert all(r["splits"] == 1 for r in rows)
    assert sorted(r["split"] for r in rows) == ["test"] + ["train"] * 5 + ["validation"] * 2
    assert min(r["rows"] for r in rows if r["split"] == "train") > 350  # ~480 each: hashed, balanced


def test_lay_out_coalesces_many_input_partitions_without_a_shuffle(spark):
    df = spark.range(0, 3000, numPartitions=12).select(
        F.col("id").alias("row_id"),
        F.when(F.col("id") % 10 < 8, "train").when(F.col("id") % 10 == 8, "validation").otherwise("test").alias("split"),
    )
    laid = lay_out(df, {"train": 4, "validation": 1, "test": 1}, "row_id", ["row_id"], input_partitions=12)
    assert laid.rdd.getNumPartitions() == 4
    plan = laid._jdf.queryExecution().executedPlan().toString()
    assert "Exchange" not in plan and "Coalesce" in plan
    per_partition = laid.groupBy(F.spark_partition_id().alias("p"), "split").count().collect()
    train = sorted(r["count"] for r in per_partition if r["split"] == "train")
    assert train == [600] * 4  # 3 of the 250-row input partitions (200 training rows each) per task
