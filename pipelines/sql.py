"""Run a SQL query against the metastore and Delta warehouse of a config, printing the rows."""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.utils import AnalysisException, ParseException

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError


def run(spark: SparkSession, cfg: Config, query: str, max_rows: int = 50) -> list[tuple]:
    """Execute ``query`` in the config's database and print up to ``max_rows`` rows; returns them."""
    spark.catalog.setCurrentDatabase(cfg.database_name)
    try:
        result = spark.sql(query)
        rows = result.limit(max_rows + 1).collect()
    except (AnalysisException, ParseException) as err:
        raise PipelineError(f"SQL failed: {str(err).splitlines()[0]}") from None
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
