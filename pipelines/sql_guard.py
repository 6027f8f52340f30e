"""Read-only SQL for analysts: what ``dlpipe serve-sql`` and ``dlpipe sql`` run by default.

The guard is a Spark SQL extension (``jvm/src/dlpipe/sql/ReadOnly.java``, built into Spark's jars by ``make
install``). It checks every analysed plan inside Spark, before anything runs: statements that write (DROP, DELETE,
INSERT, UPDATE, MERGE, ALTER, CREATE, TRUNCATE, VACUUM, ADD JAR, ...) are refused, and so are queries that read
files by path (``text.`/etc/passwd```, ``delta.`/path```) or call Java methods (``reflect``). It is switched on by a
setting of the Spark application, which no SQL session can change. ``--writable`` leaves it off.
"""
from __future__ import annotations

from pyspark.sql import SparkSession

from dlpipe.pipelines.errors import PipelineError

EXTENSION = "dlpipe.sql.ReadOnly"
SETTING = "spark.dlpipe.sql.readOnly"
REFUSED = "read-only SQL"  # how the extension's refusals begin
PROBE = "CREATE TEMPORARY VIEW dlpipe_read_only_probe AS SELECT 1"


def read_only(settings: dict[str, str]) -> dict[str, str]:
    """``settings`` with the guard loaded and on."""
    extensions = [e for e in settings.get("spark.sql.extensions", "").split(",") if e]
    return {**settings, "spark.sql.extensions": ",".join([*extensions, EXTENSION]), SETTING: "true",
            "spark.sql.runSQLOnFiles": "false"}  # no SQL over files by path: `SELECT * FROM text.`/etc/passwd``


def check_on(spark: SparkSession) -> None:
    """Fail closed: a statement that must be refused is refused (Spark skips an extension it cannot load, with a
    warning)."""
    try:
        spark.sql(PROBE)
    except Exception as err:
        if refusal(err) is None:
            raise
    else:
        spark.catalog.dropTempView("dlpipe_read_only_probe")
        raise PipelineError(f"read-only SQL is not in force: Spark did not load {EXTENSION} (dlpipe-sql.jar in "
                            "Spark's jars folder): run make install, or pass --writable")


def refusal(err: BaseException) -> str | None:
    """The guard's message when ``err`` is its refusal, else None."""
    for line in str(err).splitlines():
        at = line.find(REFUSED)
        if at >= 0:
            return line[at:].strip()
    return None
