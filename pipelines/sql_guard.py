"""Read-only SQL for analysts, and the limits of `dlpipe serve-sql`: what ``dlpipe sql`` and ``serve-sql`` run.

Both are a Spark SQL extension (``jvm/src/dlpipe/sql/``, built into Spark's jars by ``make install``), switched on by
settings of the Spark application, which no SQL session can change. Read-only SQL is an allow-list: a statement runs
only if every operator of its analysed plan is a query operator over tables and views of the session catalog, every
function it calls is a built-in on the list (``functions.txt``: no reflection, no file access), or it is a listed
command (SHOW, DESCRIBE, EXPLAIN, USE, SET of a few settings); a session's other settings stay the server's.
``--writable`` leaves it off. serve-sql's limits hold either way: a timeout per statement, the rows and bytes of a
result, and one pool of Spark's FAIR scheduler per client session.
"""
from __future__ import annotations

import os
import re

from pyspark.sql import SparkSession

from dlpipe.pipelines.config.schema import SqlServerConfig
from dlpipe.pipelines.errors import PipelineError

EXTENSION = "dlpipe.sql.Guard"
READ_ONLY = "spark.dlpipe.sql.readOnly"
REFUSED = "read-only SQL"  # how the extension's refusals begin
PROBE = "CREATE TEMPORARY VIEW dlpipe_read_only_probe AS SELECT 1"
# Spark stops a statement itself this long after dlpipe's own timeout: one that hangs before it starts a Spark job.
BACKSTOP_S = 60


def guarded(settings: dict[str, str], read_only: bool, server: SqlServerConfig | None = None) -> dict[str, str]:
    """``settings`` with the extension loaded: read-only SQL if ``read_only``, the limits of ``server`` if given."""
    if not read_only and server is None:
        return settings
    extensions = [e for e in settings.get("spark.sql.extensions", "").split(",") if e]
    out = {**settings, "spark.sql.extensions": ",".join([*extensions, EXTENSION])}
    if read_only:
        out.update({READ_ONLY: "true",
                    "spark.sql.runSQLOnFiles": "false",  # no SQL over files by path: `SELECT * FROM text.`/etc/passwd``
                    # no ${env:...}, ${system:...} or ${spark.setting} in a statement: they read the server's secrets
                    "spark.sql.variable.substitute": "false"})
    if server is not None:
        out.update({"spark.dlpipe.sql.queryTimeout": str(server.query_timeout),
                    "spark.dlpipe.sql.maxResultRows": str(server.max_result_rows),
                    "spark.dlpipe.sql.maxResultBytes": str(server.max_result_bytes),
                    "spark.scheduler.mode": "FAIR",
                    # each statement runs in the thread that received it: a failed one is sent to the client as
                    # its message alone (run in the background, the Thrift server sends the Java stack trace with it)
                    "spark.sql.hive.thriftServer.async": "false"})
        if server.query_timeout:
            out["spark.sql.thriftServer.queryTimeout"] = f"{server.query_timeout + BACKSTOP_S}s"
    return out


# serve-sql on one machine: this many task slots per core, while a query's parallelism stays the number of cores. A
# query of a few long tasks (a cross join of two ranges) then cannot hold every slot until it ends: Spark's FAIR
# scheduler shares slots between client sessions only as tasks finish.
SLOTS_PER_CORE = 4


def serving_master(master: str | None) -> tuple[str | None, dict[str, str]]:
    """(the master of serve-sql's Spark, the settings that go with it) for the config's ``master``."""
    local = re.fullmatch(r"local\[(\*|[0-9]+)\]", master or "")
    if local is None:
        return master, {}
    cores = (os.cpu_count() or 1) if local[1] == "*" else int(local[1])
    return f"local[{cores * SLOTS_PER_CORE}]", {"spark.default.parallelism": str(cores)}


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
