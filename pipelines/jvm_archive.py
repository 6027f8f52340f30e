"""``python -m dlpipe.pipelines.jvm_archive PATH``: the class archive the Spark driver starts from (JDK 17 AppCDS).

A driver spends most of its first seconds loading and verifying classes: Spark's, Hive's for the metastore and
Delta's. The JVM can write the classes it loaded to an archive when it exits and map them from there the next
time, which here made a session start, its metastore and the first read of a Delta table take 11.8 s instead of
17.7 s. ``make install`` builds the archive once per installed stack by running a small session that does what
dlpipe's stages do (the metastore, Delta writes and reads, a grouping, an Arrow UDF) and keeps it in the virtual
environment; ``pipelines.session`` uses it when it is there. The archive holds only for the JDK, the jars and the
class path it was made with; where they differ the JVM skips it (silently) and starts as before.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dlpipe.pipelines.config import Config, SparkConfig


def exercise(spark) -> None:
    """What dlpipe's stages ask of the driver, on a few rows, so that their classes go into the archive."""
    import pandas as pd
    from pyspark.sql import functions as F

    df = spark.range(1000).select(F.col("id"), (F.col("id") % 7).alias("k"), F.rand(1).alias("x"))
    df.write.format("delta").mode("overwrite").saveAsTable("archive.t")
    df.limit(10).write.format("delta").mode("append").saveAsTable("archive.t")
    spark.sql("DESCRIBE HISTORY archive.t").collect()
    table = spark.table("archive.t")
    table.groupBy("k").agg(F.count("*"), F.avg("x"), F.percentile_approx("x", 0.5)).collect()
    table.mapInPandas(lambda batches: (pd.DataFrame({"s": b["x"] * 2}) for b in batches), "s double").count()
    table.createOrReplaceTempView("v")
    spark.sql("SELECT k, count(*) FROM v WHERE x > 0.5 GROUP BY k ORDER BY k").collect()


def build(path: Path) -> None:
    from pyspark import SparkContext

    from dlpipe.pipelines.session import build_session

    path = path.resolve()
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="dlpipe-archive-") as folder:
        cfg = Config(data_dir=folder, database="archive", spark=SparkConfig(
            master="local[2]", shuffle_partitions=2, conf={"spark.ui.showConsoleProgress": "false"}))
        spark = build_session(cfg, archive_at_exit=partial)
        jvm = SparkContext._gateway.proc  # the driver JVM (spark-submit execs into it)
        exercise(spark)
        spark.stop()
        jvm.stdin.close()  # the JVM exits when its Python driver's pipe closes, and writes the archive then
        jvm.wait(timeout=300)
    if not partial.is_file():
        raise SystemExit(f"the JVM wrote no class archive to {partial}")
    partial.replace(path)
    print(f"class archive: {path} ({path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
