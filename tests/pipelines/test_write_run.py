"""Writing a run's predictions while another attempt of the same run commits: Delta refuses the later commit with
a conflict (a typed exception, ``delta.exceptions``), and the write is done again on the new version. (Other runs
writing the same partition do not conflict: Delta checks their files' statistics against the run id.)"""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.pipelines.infer import write_run

DAY = dt.date(2026, 11, 3)
pytestmark = pytest.mark.slow  # one writer waits 8 s for the other to commit


def rows(spark, run_id: str, n: int, slow_seconds: float = 0.0, once: Path | None = None):
    """``n`` prediction rows of ``run_id`` on DAY, computed in one task (the other slot stays free for the other
    writer's jobs) that takes at least ``slow_seconds`` the first time (``once`` marks that it did)."""
    @F.udf(T.FloatType())
    def score(row_id):
        if row_id == 0 and slow_seconds and not once.exists():
            time.sleep(slow_seconds)
            once.touch()
        return 0.5

    return (spark.range(0, n, 1, 1).withColumnRenamed("id", "row_id")
            .select("row_id", score("row_id").alias("score"), F.lit(run_id).alias("run_id"),
                    F.lit(DAY).alias("run_date")))


def test_a_conflicting_commit_is_written_again(spark, capsys, tmp_path):
    table = "dlpipe_test.conflicting_predictions"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    written = {}

    def slow_writer():
        written["slow"] = write_run(spark, rows(spark, "slow", 1000, 8.0, tmp_path / "slept"), table, "slow",
                                    {"run_date": DAY})

    write_run(spark, rows(spark, "first", 10), table, "first", {"run_date": DAY})  # the table exists
    thread = threading.Thread(target=slow_writer)
    thread.start()
    time.sleep(3.0)  # the slow writer has read the table's version and is computing its rows
    write_run(spark, rows(spark, "slow", 100), table, "slow", {"run_date": DAY})  # another attempt, quicker
    thread.join()
    out = capsys.readouterr().out
    assert (f"infer: a concurrent run changed {table} while this one wrote (ConcurrentAppendException); "
            "writing again") in out
    assert written["slow"][1] == 1000  # written again: its rows replace those of the quicker attempt
    counts = {r["run_id"]: r["count"] for r in spark.table(table).groupBy("run_id").count().collect()}
    assert counts == {"first": 10, "slow": 1000}
