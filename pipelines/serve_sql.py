"""``dlpipe serve-sql``: the Spark Thrift JDBC server over the pipeline's metastore and Delta warehouse.

The server runs inside this Spark application (``HiveThriftServer2.startWithSparkSession``), so it has the same
Delta extensions, warehouse and metastore as the jobs: beeline and any Hive JDBC client query the prediction
tables by name until the process is stopped (Ctrl-C or SIGTERM). With the embedded Derby metastore only one
process opens the metastore at a time: while the server runs, clients query through it, and jobs that write
tables run after it stops, or against a shared metastore (docs/predictions.md).
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from pyspark.sql import SparkSession

from dlpipe.pipelines import sql_auth
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError

START_TIMEOUT_S = 120


def prepare(cfg: Config) -> tuple[str, Path | None]:
    """Before Spark starts: (the address the server will bind, its password file or None). A server that other
    machines could reach must have logins, wherever its address was set; the port must be free."""
    host, source = sql_auth.bind_host(cfg)
    password_file = sql_auth.check(host, cfg.sql_server.password_file, source, cfg.sql_server.run_as)
    check_port_free(host, cfg.sql_server.port)
    return host, password_file


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PipelineError(f"cannot serve on {host}:{port} ({err.strerror}): stop what uses the port or "
                                "set another with --port (or sql_server.port)") from None


def listening_address(spark: SparkSession, port: int) -> str | None:
    """The address that this application's JVM listens on at ``port``, as the operating system says."""
    import psutil

    proc = getattr(spark.sparkContext._gateway, "proc", None)
    # the JVM dlpipe started, or under spark-submit the JVM that started this driver
    jvm = psutil.Process(proc.pid) if proc is not None else psutil.Process().parent()
    for conn in jvm.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            return conn.laddr.ip.removeprefix("::ffff:")  # an IPv4 address on the JVM's IPv6 socket
    return None


def run(spark: SparkSession, cfg: Config, stop: threading.Event | None = None, writable: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set). The server reads its host and port from the session's
    Hadoop settings, which ``pipelines.session`` sets from ``sql_server`` when it builds the session."""
    host, password_file = prepare(cfg)
    port = cfg.sql_server.port
    if not spark.catalog.databaseExists(cfg.database_name):
        raise PipelineError(f"database {cfg.database_name} does not exist yet: run a pipeline first (`dlpipe run`), "
                            "then serve its tables")
    spark.catalog.setCurrentDatabase(cfg.database_name)
    if password_file is not None:
        sql_auth.require_logins(spark, password_file, cfg.sql_server.login_attempts, cfg.sql_server.lockout_seconds)
    thriftserver = spark.sparkContext._jvm.org.apache.spark.sql.hive.thriftserver
    server = thriftserver.HiveThriftServer2.startWithSparkSession(spark._jsparkSession, False)
    stop = stop or threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        deadline = time.time() + START_TIMEOUT_S
        while (address := listening_address(spark, port)) is None:
            if time.time() > deadline:
                raise PipelineError(f"the Thrift server did not start listening on {host}:{port} within "
                                    f"{START_TIMEOUT_S}s: see the log above")
            time.sleep(0.5)
        if password_file is not None:  # failed logins are counted per client address too
            spark.sparkContext._jvm.dlpipe.sql.ClientAddress.install(server)
        if password_file is None and not sql_auth.is_loopback(address):
            raise PipelineError(f"the Thrift server listens on {address}:{port}, which other machines reach, without "
                                "logins: set sql_server.password_file (docs/team.md), or serve on 127.0.0.1")
        limits = cfg.sql_server
        url = f"jdbc:hive2://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}/{cfg.database_name}"
        login = " -n USER -w PASSWORD_FILE" if password_file else ""
        print(f"serve-sql: Spark Thrift JDBC server listening on {address}:{port} (process {os.getpid()}), "
              f"{'writable' if writable else 'read-only'}, "
              f"{f'logins from {password_file}' if password_file else 'no logins (loopback only)'}\n"
              f"  limits per statement: {_limit(limits.query_timeout, 's')}, {_limit(limits.max_result_rows, 'rows')}, "
              f"{_limit(limits.max_result_bytes, 'bytes')} (sql_server.query_timeout, max_result_rows, max_result_bytes)\n"
              f"  query it:  beeline -u {url}{login} -e \"SHOW TABLES\"\n"
              f"  stop it:   Ctrl-C, or kill {os.getpid()}", flush=True)
        while not stop.wait(1.0):
            pass
        print("serve-sql: stopping", flush=True)
    finally:
        server.stop()


def _limit(value: int, unit: str) -> str:
    return f"{value:,} {unit}" if value else f"no limit of {unit}"
