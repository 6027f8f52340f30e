"""The one place a Spark session is built.

Embedded default: ``local[*]`` Spark with the Delta Lake extensions, a warehouse and an embedded Derby metastore
under the data folder (``var/`` by default), so a table written by one job is visible by name to the next job, to
``dlpipe sql`` and to ``spark-sql`` started the way docs/predictions.md shows. With ``spark.master: null`` the master and
resources come from ``spark-submit``.

Everything Spark writes on this machine (warehouse, metastore, derby.log, scratch and shuffle files) stays under the
data folder. The same settings are written to ``<data_dir>/conf/spark-defaults.conf`` so that the stock Spark tools
(``spark-sql``, ``spark-submit``, ``beeline`` through the Thrift server) see the same warehouse and metastore with
``SPARK_CONF_DIR=<data_dir>/conf``.

A driver started here loads its classes from the class archive ``make install`` builds (``pipelines.jvm_archive``)
when there is one: Spark starts about 6 s sooner.
"""
from __future__ import annotations

import os
import re
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from dlpipe.pipelines import metastore, sql_auth, sql_guard
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError


def check_delta_jars() -> None:
    """The Delta Lake jars matching the installed delta-spark package must be in the Spark distribution's jars/
    folder (``make install`` puts them there)."""
    if launched_by_spark_submit():
        return  # spark-submit decided the classpath (--jars / --packages, or the cluster's own Spark)
    version = importlib_metadata.version("delta-spark")
    folder = Path(pyspark.__file__).parent / "jars"
    missing = [name for name in (f"delta-spark_2.13-{version}.jar", f"delta-storage-{version}.jar")
               if not (folder / name).is_file()]
    if missing:
        raise PipelineError(
            f"Delta Lake jar {missing[0]} is not in {folder}: run `make install`, which fetches it from Maven Central"
        )


HIVE_RESOURCES = "tmp/hive-resources"  # under the data folder: one for every Hive session


def prepare_data_dir(cfg: Config) -> Path:
    """Create the data folder (owner-only when it is new) and check that it is writable; return its absolute
    path."""
    root = cfg.data_path
    try:
        if not root.exists():
            root.mkdir(mode=0o700, parents=True)
        # HIVE_RESOURCES: Hive's sessions share it and each creates it if missing, so sessions opened at once
        # through serve-sql raced, and the loser failed ("Couldn't create directory")
        for sub in ("warehouse", "tmp", HIVE_RESOURCES, "conf", "models", "artifacts"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        probe = root / "tmp" / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PipelineError(f"data folder {root} is not writable ({err.strerror}): set data_dir to a folder you can write") from None
    return root


def class_archive() -> Path:
    """The driver's class archive (JDK AppCDS), kept in the virtual environment whose Spark jars it holds."""
    return Path(sys.prefix) / "spark-driver-classes.jsa"


def driver_java_options(cfg: Config, archive_at_exit: Path | None = None) -> str:
    """The driver's own JVM options: its log settings, and its class archive, used if there is one (a stale or
    foreign archive is skipped without a word), or written at exit (``archive_at_exit``)."""
    options = f"-Dlog4j2.configurationFile={cfg.data_path / 'conf' / 'log4j2.properties'}"
    quiet = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # the JVM's archive messages: none when made, none when skipped
    if archive_at_exit is not None:
        return f"{options} -XX:ArchiveClassesAtExit={archive_at_exit} {quiet}"
    archive = class_archive()
    if archive.is_file():
        options += f" -XX:SharedArchiveFile={archive} {quiet}"
    return options


def spark_settings(cfg: Config, archive_at_exit: Path | None = None) -> dict[str, str]:
    """All Spark settings dlpipe sets, as plain key/value pairs (also written to spark-defaults.conf)."""
    root = cfg.data_path
    tmp = root / "tmp"
    # -XX:-UsePerfData: no hsperfdata files in /tmp.
    # -XX:-DontCompileHugeMethods: HotSpot never JIT-compiles a method over 8,000 bytes of bytecode, and Spark's
    # generated code for a wide aggregation or projection (one expression per feature column) is bigger than that:
    # it would run interpreted. Fitting the demo spec on 5M rows: profile pass 26 s -> 7 s.
    java_opts = (f"-Dderby.system.home={root} -Djava.io.tmpdir={tmp} -XX:-UsePerfData "
                 "-XX:-DontCompileHugeMethods")
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.hive.exec.scratchdir": str(tmp / "hive"),
        "spark.hadoop.hive.exec.local.scratchdir": str(tmp / "hive-local"),
        "spark.hadoop.hive.downloaded.resources.dir": str(root / HIVE_RESOURCES),
        "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
        "spark.hadoop.hive.metastore.schema.verification": "false",
        "spark.local.dir": str(tmp),
        "spark.driver.extraJavaOptions": f"{java_opts} {driver_java_options(cfg, archive_at_exit)}",
        "spark.executor.extraJavaOptions": java_opts,
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        # Delta rebuilds a table's state from its log in this many tasks (default 50). dlpipe's tables have tens of
        # files per version, for which 2 tasks are quickest: the first read of the runs table 7.0 s -> 5.9 s, later
        # reads 0.77 -> 0.63 s. Tables of many thousand files want more (spark.conf).
        "spark.databricks.delta.snapshotPartitions": "2",
        # The runs table's and feature tables' wide rows, and infer's drift counts (about 25 per numeric feature):
        # no warning that a plan's text was shortened.
        "spark.sql.debug.maxToStringFields": "5000",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Python workers without the working directory first on their import path (python -m puts it there): a
        # models/ or dlpipe/ folder where a job was started is never imported in place of the installed packages.
        "spark.executorEnv.PYTHONSAFEPATH": "1",
        "spark.ui.showConsoleProgress": "true",
        # PySpark's DataFrame debugging tags every Column operation with its Python call site, five Py4J round
        # trips each: building featurize's expressions cost 45,000 round trips, about 5 s per stage. dlpipe reports
        # a failed query in one line of its own, without that call site.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
    }
    settings.update(metastore.settings(cfg))
    if cfg.spark.master is not None and not launched_by_spark_submit():
        settings["spark.driver.memory"] = cfg.spark.driver_memory
    settings.update(cfg.spark.conf)
    # Where `dlpipe serve-sql` listens and who logs in (the Thrift server reads these when it starts, not later),
    # after spark.conf, which can name the address too: one address, resolved from every source (sql_auth.bind_host)
    settings.update(sql_auth.settings(cfg))
    return settings


def training_workers(spark: SparkSession, cfg: Config) -> int:
    """``train.num_proc``, with ``auto`` meaning the application's task slots (all cores of its executors)."""
    if cfg.train.num_proc == "auto":
        return max(1, spark.sparkContext.defaultParallelism)
    return cfg.train.num_proc


# Setting names that hold credentials (Spark's own spark.redaction.regex, plus credential and private keys): their
# values reach Spark, never a file.
SECRET_SETTING = re.compile(r"secret|password|token|access[.]?key|account[.]key|credential|private[.]?key",
                            re.IGNORECASE)
MASK = "***"


def masked(settings: dict[str, str]) -> dict[str, str]:
    """``settings`` with the value of every credential-like setting replaced by ``***``."""
    return {key: MASK if SECRET_SETTING.search(key) else value for key, value in settings.items()}


def write_spark_defaults(cfg: Config, settings: dict[str, str]) -> Path:
    """Write ``<data_dir>/conf/spark-defaults.conf`` so spark-sql and spark-submit find the same metastore.
    Credentials are written as ``***``: a stock tool that needs one gets it from its own --conf."""
    path = cfg.data_path / "conf" / "spark-defaults.conf"
    lines = ["# Written by dlpipe: use with SPARK_CONF_DIR=" + str(path.parent)]
    lines += [f"{key} {value}" for key, value in sorted(masked(settings).items())]
    path.write_text("\n".join(lines) + "\n")
    (path.parent / "log4j2.properties").write_text(_QUIET_LOG4J)
    return path


def is_local(cfg: Config) -> bool:
    """True when this process starts a ``local[...]`` Spark of its own (not spark-submit's, not a cluster's)."""
    master = cfg.spark.master
    return master is not None and master.startswith("local") and not launched_by_spark_submit()


def quiet_query_errors() -> None:
    """PySpark logs every failed query it converts to a Python exception as a JSON record with the whole JVM stack
    trace (about 100 lines) before the exception reaches dlpipe, which reports it in one line."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


def launched_by_spark_submit() -> bool:
    """True when spark-submit started this Python driver (it passes its Py4J gateway in the environment)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def launch_jvm_apart(cfg: Config, master: str | None, settings: dict[str, str]) -> None:
    """Start the driver's JVM (as PySpark does, with the same settings) in a session of its own, unless one runs:
    a SIGTERM to this process's group (a scheduler stopping the task) then reaches this process alone, which
    stops its jobs and Spark in order (``pipelines.termination``); the JVM still exits when this process dies
    (it watches its stdin)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or launched_by_spark_submit():
        return
    # PySpark passes these on the JVM's command line, which every user of the machine can read: credentials go
    # to the JVM through Py4J when the session is built
    plain = [(key, value) for key, value in settings.items() if not SECRET_SETTING.search(key)]
    conf = SparkConf(loadDefaults=False).setAll(plain).setAppName(cfg.spark.app_name)
    if master is not None:
        conf.setMaster(master)
    SparkContext._ensure_initialized(gateway=launch_gateway(conf, popen_kwargs={"start_new_session": True}))


# A driver that reads a few small tables and exits (``small_reads``) compiles with HotSpot's C1 only: the C2
# compiler's threads took the two cores from a short command's own work. `dlpipe runs` on a 3,000-row run's data
# folder: session and first read of the runs table 19.4 s -> 11.6 s (a busy machine). Long or heavy work keeps C2,
# whose code ran a 1M-row featurize 27% faster once warm.
QUICK_START_OPTIONS = "-XX:TieredStopAtLevel=1"


def build_session(cfg: Config, archive_at_exit: Path | None = None, read_only: bool = False,
                  serving: bool = False, small_reads: bool = False) -> SparkSession:
    """Build (or return the running) Spark session for this config. ``read_only``: only the SQL that read-only SQL
    allows runs (``pipelines.sql_guard``); ``serving``: the session of ``dlpipe serve-sql``, with its limits;
    ``small_reads``: a command that only reads dlpipe's own small tables (``QUICK_START_OPTIONS``)."""
    prepare_data_dir(cfg)
    check_delta_jars()
    metastore.check_derby_free(cfg)
    settings = spark_settings(cfg, archive_at_exit)
    write_spark_defaults(cfg, settings)
    if small_reads:
        settings["spark.driver.extraJavaOptions"] += f" {QUICK_START_OPTIONS}"
    settings = sql_guard.guarded(settings, read_only, cfg.sql_server if serving else None)
    master = cfg.spark.master
    if serving and is_local(cfg):
        master, serving_settings = sql_guard.serving_master(master)
        settings.update(serving_settings)
    # Python workers run the interpreter that runs the driver, so local jobs see the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # No SPARK_CONF_DIR of ours: every setting is passed to the driver directly, and the class archive holds only
    # for the class path it was made with (which starts with the conf folder).
    # Python workers, Horovod ranks and TensorFlow inherit this: their scratch files stay in the data folder too.
    os.environ["TMPDIR"] = str(cfg.data_path / "tmp")
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if master is not None and not launched_by_spark_submit():
        builder = builder.master(master)
    if is_local(cfg):
        # One machine: bind to the loopback address (no warning that the host name resolves to it), and the
        # scratch folder through the environment, which Spark reads first and without its warning that a cluster
        # manager may override spark.local.dir.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("SPARK_LOCAL_DIRS", settings.pop("spark.local.dir"))
    quiet_query_errors()
    for key, value in settings.items():
        builder = builder.config(key, value)
    launch_jvm_apart(cfg, master, settings)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if read_only:
        sql_guard.check_on(spark)  # a read-only session cannot create the database: sql and serve-sql check it
    else:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
    return spark


_QUIET_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
# Start-up notes that need no action: another Spark application on this machine holds the UI port (the next free
# one is taken), and which network address Spark binds to.
logger.sparkutils.name = org.apache.spark.util.Utils
logger.sparkutils.level = error
# serve-sql gives each client session a scheduler pool of its own, made when its first statement runs, and checks
# each result in one partition (jvm/src/dlpipe/sql/Limits.java); a client session's end logs an error about files
# that it never made.
logger.windowexec.name = org.apache.spark.sql.execution.window.WindowExec
logger.windowexec.level = error
logger.hivesession.name = org.apache.hive.service.cli.session.HiveSessionImpl
logger.hivesession.level = fatal
logger.fairpools.name = org.apache.spark.scheduler.FairSchedulableBuilder
logger.fairpools.level = error
# Hadoop's native library is optional: Spark reads and writes with the built-in Java classes without it.
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = error
# The metastore's database library: a metastore that cannot be opened (a wrong password, a Derby metastore held by
# another process) logs thousands of lines of traces here. dlpipe says why in one line (errors.metastore_failure).
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = off
logger.metastore.name = org.apache.hadoop.hive.metastore
logger.metastore.level = error
# Delta tables are stored in the metastore in Spark's own format; Hive's compatibility warning is noise.
logger.hivecatalog.name = org.apache.spark.sql.hive.HiveExternalCatalog
logger.hivecatalog.level = error
# Overwriting a Delta table with a new schema: Hive refuses the Hive-compatible schema change and logs a stack
# trace, then Spark stores the schema in its own format, as it does for every Delta table. Noise as well.
logger.hivealter.name = org.apache.hadoop.hive.metastore.HiveAlterHandler
logger.hivealter.level = off
logger.hmshandler.name = org.apache.hadoop.hive.metastore.RetryingHMSHandler
logger.hmshandler.level = fatal
"""
