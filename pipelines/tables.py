"""Reading inputs, asking about tables, and replacing a run's rows in a table the runs share."""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from dlpipe.pipelines.config import Config, TableSource
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.run_id import check_run_id


def read_source(spark: SparkSession, cfg: Config, source: TableSource) -> DataFrame:
    """The table or files ``source`` names; a clear error if it does not exist."""
    if source.table is not None:
        name = cfg.qualified(source.table)
        if not spark.catalog.tableExists(name):
            raise PipelineError(f"input table {name} does not exist: create it first (for the demo: `dlpipe generate`)")
        return spark.table(name)
    path = Path(source.path).expanduser()
    if "://" not in source.path and not path.exists():
        raise PipelineError(f"input path {source.path} does not exist: fix the input path in the config")
    try:
        return spark.read.format(source.format).load(source.path)
    except AnalysisException as err:
        raise PipelineError(f"cannot read {source.format} input at {source.path}: {str(err).splitlines()[0]}") from None


def read_pinned(spark: SparkSession, cfg: Config, source: TableSource) -> tuple[DataFrame, dict]:
    """(rows, identity) of ``source`` as one read sees it: a Delta input at the version its identity records, so
    that every pass of a stage reads that one snapshot, and none a version committed meanwhile."""
    df = read_source(spark, cfg, source)
    identity = input_identity(spark, cfg, source, df)
    if identity["format"] == "delta":
        df = spark.sql(f"SELECT * FROM {sql_name(cfg, source)} VERSION AS OF {identity['delta_version']}")
    return df, identity


def table_version(spark: SparkSession, cfg: Config, source: TableSource) -> int | None:
    """The current Delta version of ``source``, or None when it is not a Delta table."""
    if source.table is not None:
        name = cfg.qualified(source.table)
        if not spark.catalog.tableExists(name):
            return None
        try:  # the history of a Delta table reads its log only (DESCRIBE DETAIL would rebuild its state)
            return delta_version(spark, name)
        except AnalysisException:  # a table of another format
            return None
    return delta_version(spark, sql_name(cfg, source)) if source.format == "delta" else None


def sql_name(cfg: Config, source: TableSource) -> str:
    """How SQL names ``source``: its qualified table name, or for Delta files ``delta.`path```."""
    return cfg.qualified(source.table) if source.table else "delta.`{}`".format(source.path.replace("`", "``"))


def last_commit(spark: SparkSession, qualified_name: str) -> tuple[int, dict[str, str]]:
    """(version, operation metrics such as numOutputRows) of the latest commit of a Delta table."""
    row = spark.sql(f"DESCRIBE HISTORY {qualified_name} LIMIT 1").first()
    return int(row["version"]), dict(row["operationMetrics"] or {})


def marked_commit(spark: SparkSession, qualified_name: str, marker: str) -> tuple[int, dict[str, str]]:
    """(version, operation metrics) of the commit of a Delta table written with ``userMetadata`` ``marker``: the
    commit this process made, also when concurrent writers committed after it."""
    history = spark.sql(f"DESCRIBE HISTORY {qualified_name}")
    row = history.where(history.userMetadata == marker).select("version", "operationMetrics").first()
    if row is None:
        raise PipelineError(f"table {qualified_name} has no commit marked {marker!r}: was it replaced meanwhile?")
    return int(row["version"]), dict(row["operationMetrics"] or {})


def delta_version(spark: SparkSession, qualified_name: str) -> int:
    return last_commit(spark, qualified_name)[0]


def input_identity(spark: SparkSession, cfg: Config, source: TableSource, df: DataFrame) -> dict:
    """What exactly was read: the Delta version of a Delta input, or the file list and sizes of a Parquet input."""
    identity: dict = {"source": source.describe()}
    version = table_version(spark, cfg, source)
    if version is not None:
        return {**identity, "format": "delta", "delta_version": version}
    files = []
    for name in sorted(df.inputFiles()):
        filesystem, path = hadoop_file(spark, name)
        files.append({"path": name, "bytes": int(filesystem.getFileStatus(path).getLen())})
    return {**identity, "format": "parquet", "files": files, "bytes": sum(f["bytes"] for f in files)}


def missing_files(spark: SparkSession, table: str) -> list[str]:
    """The data files the Delta log of ``table`` names that are no longer there (deleted by hand, lost)."""
    missing = []
    for name in spark.table(table).inputFiles():
        filesystem, path = hadoop_file(spark, name)
        if not filesystem.exists(path):
            missing.append(name)
    return missing


def hadoop_file(spark: SparkSession, name: str):
    """(Hadoop file system, Hadoop path) of a file URI as Spark lists it, for asking about the file in the JVM."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(name)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def replace_run_rows(spark: SparkSession, rows: DataFrame, table: str, run_id: str,
                     partition_by: tuple[str, ...] = ()) -> None:
    """``rows`` in ``table`` in place of the rows of an earlier attempt of ``run_id`` (one Delta commit; new
    columns merged). A run id's first rows are a blind append, which Delta never finds in conflict with another
    run's, so runs at once write side by side; the first run creates the table (two creating it at once: the
    later one appends)."""
    for attempt in (1, 2):
        exists = spark.catalog.tableExists(table)
        again = exists and spark.table(table).where(F.col("run_id") == run_id).limit(1).count() > 0
        writer = rows.write.format("delta").option("mergeSchema", "true").partitionBy(*partition_by)
        if again:
            writer = writer.mode("overwrite").option("replaceWhere", f"run_id = '{check_run_id(run_id)}'")
        try:
            writer.mode("overwrite" if again else "append").saveAsTable(table)
            return
        except Exception:
            if attempt == 2 or exists or not spark.catalog.tableExists(table):
                raise
