"""``dlpipe sql`` in this process: a result printed, saved whole as CSV or Parquet, and a failed query in one line."""
from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest

from dlpipe.pipelines import sql
from dlpipe.pipelines.errors import PipelineError


@pytest.fixture(scope="module")
def scores(spark, test_config):
    spark.range(120).selectExpr("id AS row_id", "CAST(id % 3 AS STRING) AS carrier", "CAST(id AS DOUBLE) / 120 AS score") \
        .write.format("delta").mode("overwrite").saveAsTable(f"{test_config.database_name}.sql_scores")
    return test_config


def test_a_result_is_printed_up_to_max_rows(spark, scores, capsys):
    rows = sql.run(spark, scores, "SELECT carrier, count(*) AS n FROM sql_scores GROUP BY carrier ORDER BY carrier",
                   max_rows=2)
    assert rows == [("0", 40), ("1", 40)]
    out = capsys.readouterr().out
    assert "| carrier | n  |" in out and "(showing the first 2 rows)" in out


def test_a_result_is_saved_whole_as_csv_or_parquet(spark, scores, tmp_path, capsys):
    query = "SELECT row_id, carrier, score FROM sql_scores ORDER BY row_id"
    sql.run(spark, scores, query, max_rows=5, output=str(tmp_path / "scores.csv"))
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row_id", "carrier", "score"] and len(rows) == 121  # every row, not max_rows
    assert rows[120] == ["119", "2", str(119 / 120.0)]
    sql.run(spark, scores, query, output=str(tmp_path / "scores.parquet"))
    table = pq.read_table(tmp_path / "scores.parquet")
    assert table.num_rows == 120 and table.column("carrier").to_pylist()[:4] == ["0", "1", "2", "0"]
    assert capsys.readouterr().out.splitlines()[-1] == f"sql: 120 rows written to {tmp_path / 'scores.parquet'}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.parquet"]  # no partial file left


def test_a_bad_query_or_output_fails_in_one_line(spark, scores, tmp_path):
    with pytest.raises(PipelineError) as err:
        sql.run(spark, scores, "SELECT no_such_column FROM sql_scores")
    assert str(err.value).startswith("SQL failed: [UNRESOLVED_COLUMN.WITH_SUGGESTION]") and "\n" not in str(err.value)
    with pytest.raises(PipelineError) as err:
        sql.run(spark, scores, "SELECT 1", output=str(tmp_path / "result.json"))
    assert str(err.value) == f"--output {tmp_path / 'result.json'}: name a .csv or .parquet file"
    with pytest.raises(PipelineError) as err:
        sql.run(spark, scores, "SELECT 1", output=str(tmp_path / "missing" / "result.csv"))
    assert str(err.value) == f"--output {tmp_path / 'missing' / 'result.csv'}: folder {tmp_path / 'missing'} does not exist"
