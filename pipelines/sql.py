"""Run a SQL query against the metastore and Delta warehouse of a config, printing the rows."""
from __future__ import annotations

from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.utils import AnalysisException, ParseException

from dlpipe.pipelines import sql_guard
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError


OUTPUT_FORMATS = (".csv", ".parquet")


def run(spark: SparkSession, cfg: Config, query: str, max_rows: int = 50, output: str | None = None) -> list[tuple]:
    """Execute ``query`` in the config's database and print up to ``max_rows`` rows; returns them. With
    ``output`` (a ``.csv`` or ``.parquet`` file), save every row of the result there instead."""
    target = output_file(output) if output else None
    if spark.catalog.databaseExists(cfg.database_name):  # read-only on a new data folder: not created yet
        spark.catalog.setCurrentDatabase(cfg.database_name)
    try:
        result = spark.sql(query)
        if target is not None:
            rows = save(result, target)
            print(f"sql: {rows:,} row{'' if rows == 1 else 's'} written to {target}")
            return []
        rows = result.limit(max_rows + 1).collect()
    except (AnalysisException, ParseException) as err:
        raise PipelineError(f"SQL failed: {first_line(err)}") from None
    except Exception as err:
        refused = sql_guard.refusal(err)
        if refused is not None:
            raise PipelineError(refused) from None
        if isinstance(err, Py4JJavaError):  # a Spark error that PySpark does not convert (SQL scripting's)
            raise PipelineError(f"SQL failed: {first_line(err.java_exception)}") from None
        raise
    print(format_rows(result.columns, [tuple(r) for r in rows[:max_rows]]))
    if len(rows) > max_rows:
        print(f"(showing the first {max_rows} rows)")
    return [tuple(r) for r in rows[:max_rows]]


def format_rows(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table, as spark-sql prints it."""
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |", line]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    out.append(line)
    return "\n".join(out)


def first_line(err: Exception) -> str:
    """Spark's own message of a failed query, without the plan and stack trace after it."""
    text = getattr(err, "getMessage", lambda: str(err))() or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def output_file(output: str) -> Path:
    """Where ``--output`` saves, checked before the query runs: a .csv or .parquet file in a folder that exists."""
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise PipelineError(f"--output {output}: name a .csv or .parquet file")
    if not path.parent.is_dir():
        raise PipelineError(f"--output {output}: folder {path.parent} does not exist")
    return path


def save(result: DataFrame, path: Path) -> int:
    """Every row of ``result`` into one CSV file (with a header) or one Parquet file, written whole or not at all;
    returns the row count. The rows pass through the driver: for results bigger than its memory, write a table
    with ``CREATE TABLE ... AS SELECT`` instead."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = result.toArrow()
    partial = path.with_name(f".{path.name}.partial")
    if path.suffix.lower() == ".csv":
        pa_csv.write_csv(table, partial)
    else:
        pq.write_table(table, partial)
    partial.replace(path)
    return table.num_rows
