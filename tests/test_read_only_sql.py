"""Read-only SQL as an attacker with an analyst's login tries it, through `dlpipe sql` and through beeline against one
`dlpipe serve-sql` with logins, on the end-to-end run's tables: each breach of issue 35 is refused in one line or
stopped at a limit, and afterwards the tables, the metastore and the file system are as they were. The queries an
analyst needs (every allowed operator, the docs' SQL) still run."""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

from tests.demo import BIN, REPO, ROWS
from tests.thrift import beeline, serving

pytestmark = pytest.mark.slow

PASSWORD = "correct-horse"
TIMEOUT_S = 15  # the server's query_timeout here
MAX_ROWS, MAX_BYTES = 5000, 300_000


def breaches(data_dir: Path, secret: Path, pwned: Path) -> list[tuple[str, str]]:
    """(statement, what its one-line error says): the breaches of issue 35 and the kinds refused before. A write is
    refused under the name of its analysed plan, Spark's or Delta's (DeleteCommand, MergeIntoCommand, ...)."""
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    jdbc = "org.apache.spark.sql.execution.datasources.v2.jdbc.JDBCTableCatalog"
    script = "AS (line STRING) FROM VALUES (1) AS x(a)"
    refused = "read-only SQL: the statement is refused: "
    return [
        (f"SELECT TRANSFORM(a) USING 'cat {secret}; id' {script}", refused + "it uses ScriptTransformation"),
        (f"SELECT TRANSFORM(a) USING 'touch {pwned}' {script}", refused + "it uses ScriptTransformation"),
        (f"SELECT TRANSFORM(a) USING 'env' {script}", refused + "it uses ScriptTransformation"),
        ("SET spark.sql.scripting.enabled=true", refused + "SET spark.sql.scripting.enabled"),
        (f"SET spark.sql.catalog.ms={jdbc}", refused + "SET spark.sql.catalog.ms"),
        (f"SET spark.sql.catalog.ms.url=jdbc:derby:{data_dir / 'metastore_db'}", refused + "SET spark.sql.catalog.ms.url"),
        ("SET spark.sql.catalog.ms.sessionInitStatement=UPDATE APP.TBLS SET TBL_NAME = 'forged'",
         refused + "SET spark.sql.catalog.ms.sessionInitStatement"),
        ("SELECT TBL_ID, TBL_NAME FROM ms.APP.TBLS", "REQUIRES_SINGLE_PART_NAMESPACE"),  # no catalog ms
        ("SET spark.sql.catalog.mem.url=jdbc:derby:memory:x", refused + "SET spark.sql.catalog.mem.url"),
        (f"DESCRIBE HISTORY '{warehouse / 'predictions'}'", refused + "DESCRIBE HISTORY of a path"),
        (f"DESCRIBE DETAIL '{warehouse / 'predictions'}'", refused + "it reads files by path"),
        (f"SELECT * FROM delta.`{warehouse / 'predictions'}`", "TABLE_OR_VIEW_NOT_FOUND"),
        ("SELECT count(*) FROM range(1000000000000)", refused + "range() of more than 1,000,000,000 rows"),
        ("SELECT reflect('java.lang.System', 'getenv', 'DLPIPE_METASTORE_PASSWORD')", refused + "it calls reflect"),
        ("SELECT java_method('java.lang.System', 'getProperty', 'user.home')", refused + "it calls java_method"),
        ("SELECT try_reflect('java.lang.System', 'getProperty', 'user.home')", refused + "it calls try_reflect"),
        ("SELECT xpath_string('<a>b</a>', 'a')", refused + "it calls xpath_string"),
        ("SELECT input_file_name() FROM predictions LIMIT 1", refused + "it calls input_file_name"),
        ("SELECT * FROM text.`/etc/hostname`", "TABLE_OR_VIEW_NOT_FOUND"),
        ("CREATE TABLE leak (l STRING) USING text LOCATION '/etc'", refused + "it runs CreateDataSourceTableCommand"),
        ("CREATE TEMPORARY FUNCTION f AS 'org.apache.hadoop.hive.ql.udf.UDFReflect'",
         refused + "it runs CreateFunctionCommand"),
        ("CREATE TEMPORARY VIEW v AS SELECT 1", refused + "it runs CreateViewCommand"),
        ("ADD JAR /tmp/x.jar", refused + "it runs AddJarsCommand"),
        ("CACHE TABLE predictions", refused + "it runs CacheTable"),
        ("SET spark.dlpipe.sql.readOnly=false", refused + "SET spark.dlpipe.sql.readOnly"),
        ("SET spark.sql.runSQLOnFiles=true", refused + "SET spark.sql.runSQLOnFiles"),
        ("SET spark.sql.extensions=x", refused + "SET spark.sql.extensions"),
        ("SET spark.hadoop.fs.file.impl=x", refused + "SET spark.hadoop.fs.file.impl"),
        ("SET", refused + "SET without a setting"),
        ("DROP TABLE predictions", refused + "it runs "),
        ("DELETE FROM predictions", refused + "it runs "),
        ("INSERT INTO runs SELECT * FROM runs LIMIT 1", refused + "it runs "),
        ("UPDATE predictions SET run_id = 'forged'", refused + "it runs "),
        ("MERGE INTO runs USING runs AS s ON false WHEN NOT MATCHED THEN INSERT *", refused + "it runs "),
        ("ALTER TABLE predictions SET TBLPROPERTIES ('forged' = 'yes')", refused + "it runs "),
        ("CREATE TABLE copy AS SELECT * FROM predictions", refused + "it runs "),
        ("TRUNCATE TABLE runs", refused + "it runs "),
        ("EXPLAIN SELECT reflect('java.lang.System', 'getProperty', 'user.home')", refused + "it calls reflect"),
        # found by an attack on the first version: a shuffle too wide for the server's memory, and a function or
        # table named by IDENTIFIER(), which Spark evaluates while it analyses the statement, before any check
        ("SET spark.sql.shuffle.partitions=2000000000", refused + "SET spark.sql.shuffle.partitions=2000000000"),
        ("SELECT * FROM range(IDENTIFIER('xpath_int')('<a>3</a>', 'a'))", refused + "IDENTIFIER(...)"),
        (f"SELECT * FROM IDENTIFIER('table_changes_by_path')('{warehouse / 'predictions'}', 0)", refused + "IDENTIFIER"),
        # and by a review of the second: as many partitions asked for by a hint or range() instead
        ("SELECT /*+ REPARTITION(2000000000) */ * FROM range(1)", refused + "Repartition of 2,000,000,000 partitions"),
        ("SELECT /*+ REBALANCE(2000000000) */ * FROM range(1)", refused + "RebalancePartitions of 2,000,000,000"),
        ("SELECT * FROM range(0, 1, 1, 2000000000)", refused + "range() of 2,000,000,000 partitions"),
    ]


# Each operator and command that read-only SQL allows, as an analyst writes it; (statement, its rows):
# None is at least one row, ANY is a count that depends on which runs the suite made before.
ANY = object()
ALLOWED = [
    ("SELECT predicted_label, count(*) AS n, avg(score) FROM predictions WHERE run_id = 'e2e-1' "
     "GROUP BY predicted_label HAVING count(*) > 0 ORDER BY predicted_label", 2),
    ("SELECT p.row_id, r.label FROM predictions p JOIN raw_events r ON p.row_id = r.row_id "
     "WHERE p.run_id = 'e2e-1' ORDER BY p.row_id LIMIT 3 OFFSET 1", 3),
    ("SELECT row_id, rank() OVER (PARTITION BY predicted_label ORDER BY score DESC) AS r FROM predictions "
     "WHERE run_id = 'e2e-1' ORDER BY row_id LIMIT 2", 2),
    ("WITH top AS (SELECT row_id FROM predictions WHERE run_id = 'e2e-1' ORDER BY score DESC LIMIT 5) "
     "SELECT count(*) FROM top UNION ALL SELECT count(*) FROM top", 2),
    ("SELECT count(*) FROM predictions WHERE row_id IN (SELECT row_id FROM raw_events WHERE label = 1) "
     "AND EXISTS (SELECT 1 FROM metrics) AND score > (SELECT min(score) FROM predictions)", 1),
    ("SELECT * FROM VALUES (1, 'a'), (2, 'b') AS x(i, s) INTERSECT SELECT 1, 'a'", 1),
    ("SELECT DISTINCT predicted_label FROM predictions EXCEPT SELECT 2", 2),
    ("SELECT count(*), sum(id) FROM range(1000)", 1),
    ("SELECT explode(array(1, 2, 3))", 3),
    ("SELECT predicted_label, count(*) FROM predictions GROUP BY ROLLUP (predicted_label)", 3),
    ("SELECT count(*) FROM predictions TABLESAMPLE (10 PERCENT)", 1),
    ("SELECT upper(model_name), round(score, 2), date_format(scored_at, 'yyyy'), coalesce(label, -1), "
     "CASE WHEN score > 0.5 THEN 'high' ELSE 'low' END, cast(row_id AS STRING) FROM predictions LIMIT 1", 1),
    ("SELECT percentile_approx(score, 0.5), stddev(score), approx_count_distinct(row_id) FROM predictions", 1),
    ("SELECT transform(array(1, 2), x -> x + 1), struct(1 AS a).a, map('k', 1)['k']", 1),
    ("SELECT * FROM predictions p, LATERAL (SELECT p.score * 2 AS double_score) LIMIT 1", 1),
    ("SELECT /*+ REPARTITION(2) */ count(*) FROM predictions", 1),
    ("SELECT * FROM (SELECT predicted_label, score FROM predictions) PIVOT (avg(score) FOR predicted_label IN (0, 1))", 1),
    ("FROM predictions |> WHERE predicted_label = 1 |> SELECT row_id |> LIMIT 2", 2),
    ("SELECT * FROM predictions p JOIN raw_events r ON p.row_id = r.row_id LIMIT 2", 2),  # two row_id columns
    ("SELECT '${env:HOME}' AS not_substituted", 1),  # no ${...} substitution: it would show the server's secrets
    # the docs' SQL
    ("SELECT predicted_label, count(*), avg(score) FROM predictions WHERE run_id = 'e2e-1' GROUP BY predicted_label", 2),
    ("SELECT run_date, feature, statistic, round(value, 3) AS value FROM drift WHERE alert ORDER BY run_date, feature", ANY),
    ("SELECT slice_values, rows, round(auc, 4) AS auc FROM metrics WHERE run_id = 'e2e-1' "
     "AND slice_columns = 'detector_region' ORDER BY auc", 6),
    ("SELECT run_date, count(*) FROM predictions GROUP BY run_date", None),
    # commands
    ("SHOW TABLES", None), ("SHOW DATABASES", None), ("SHOW COLUMNS IN predictions", None),
    ("SHOW TBLPROPERTIES predictions", None), ("SHOW FUNCTIONS LIKE 'upper'", 1), ("SHOW VIEWS", 0),
    ("DESCRIBE predictions", None), ("DESCRIBE TABLE EXTENDED predictions", None), ("DESCRIBE predictions score", None),
    ("DESCRIBE DATABASE dlpipe", None), ("DESCRIBE FUNCTION upper", None),
    ("DESCRIBE QUERY SELECT * FROM predictions", None), ("DESCRIBE HISTORY predictions", None),
    ("DESCRIBE DETAIL predictions", 1), ("EXPLAIN SELECT count(*) FROM predictions", 1),
    ("SET spark.sql.session.timeZone=Europe/Paris", 1), ("SET spark.sql.session.timeZone", 1),
    ("RESET spark.sql.session.timeZone", 0), ("USE dlpipe", 0),
]


def table_state(data_dir: Path) -> dict[str, list[str]]:
    """table folder -> its Delta log's commits: a table that changed has a new commit (or is gone)."""
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    return {t.name: sorted(p.name for p in (t / "_delta_log").glob("*.json")) for t in warehouse.iterdir()}


def value(out: subprocess.CompletedProcess) -> str:
    """The one value that ``beeline --silent=true --showHeader=false -e`` printed (after the prompt, on its line)."""
    return out.stdout.strip().splitlines()[-1].split("> ")[-1]


def errors(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def attack(pipeline_run, tmp_path_factory):
    """(data folder, a secret file, a file that must not come to be, the state of tables and files before)."""
    data_dir, _ = pipeline_run
    folder = tmp_path_factory.mktemp("attack")
    secret = folder / "secret.txt"
    secret.write_text("the secret\n")
    return data_dir, secret, folder / "pwned", table_state(data_dir), sorted(p.name for p in data_dir.iterdir())


def test_dlpipe_sql_refuses_each_breach_in_one_line(attack):
    """The statements through dlpipe sql's own code (pipelines.sql.run in a read-only session, one process for all)."""
    data_dir, secret, pwned, tables, files = attack
    statements = breaches(data_dir, secret, pwned) + [
        (f"BEGIN SELECT TRANSFORM(a) USING 'touch {pwned}' AS (l STRING) FROM VALUES (1) AS x(a); END", "SQL failed")]
    program = (
        "import json, sys\n"
        "from dlpipe.pipelines import sql\n"
        "from dlpipe.pipelines.config import load_config\n"
        "from dlpipe.pipelines.errors import PipelineError\n"
        "from dlpipe.pipelines.session import build_session\n"
        f"cfg = load_config('conf/demo.yaml', ['data_dir={data_dir}'])\n"
        "spark = build_session(cfg, read_only=True)\n"
        "for statement in json.loads(sys.stdin.read()):\n"
        "    try:\n"
        "        sql.run(spark, cfg, statement)\n"
        "        print(json.dumps(['ran', statement]))\n"
        "    except PipelineError as err:\n"
        "        print(json.dumps(['refused', statement, str(err)]))\n")
    out = subprocess.run([str(BIN / "python"), "-c", program], cwd=REPO, capture_output=True, text=True, timeout=600,
                         input=json.dumps([s for s, _ in statements]))
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("[")]
    assert [r[1] for r in results] == [s for s, _ in statements]
    for (statement, expected), result in zip(statements, results):
        assert result[0] == "refused" and expected in result[2] and "\n" not in result[2], (statement, result)
    assert "the secret" not in out.stdout + out.stderr and not pwned.exists()
    assert table_state(data_dir) == tables and sorted(p.name for p in data_dir.iterdir()) == files


class Server(NamedTuple):
    port: int
    password_file: Path  # ana's and bob's password, for beeline -w
    pid: int


@pytest.fixture(scope="module")
def server(attack, tmp_path_factory):
    """One serve-sql with logins (ana, and bob for the lock-out) and short limits, for the rest of this module."""
    data_dir = attack[0]
    folder = tmp_path_factory.mktemp("logins")
    users = folder / "sql-users"
    for user in ("ana", "bob"):
        subprocess.run([str(BIN / "python"), "-m", "dlpipe.pipelines.sql_auth", str(users), user],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=True)
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")  # as docs/team.md has it written
    sets = ["--set", f"data_dir={data_dir}", "--set", f"sql_server.password_file={users}",
            "--set", f"sql_server.query_timeout={TIMEOUT_S}", "--set", f"sql_server.max_result_rows={MAX_ROWS}",
            "--set", f"sql_server.max_result_bytes={MAX_BYTES}", "--set", "sql_server.login_attempts=3",
            "--set", "sql_server.lockout_seconds=600"]
    with serving(*sets) as (process, port, first):
        assert f"logins from {users}" in first, first
        yield Server(port, password_file, process.pid)
    # dlpipe sql is read-only too, unless --writable
    out = subprocess.run([str(BIN / "dlpipe"), "sql", "DROP TABLE runs", "--set", f"data_dir={data_dir}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stderr.splitlines()[-1].startswith(
        "dlpipe sql: error: read-only SQL: the statement is refused: it runs DropTable"), out.stderr
    for statement in ("CREATE TABLE scratch AS SELECT 1 AS x", "DROP TABLE scratch"):
        out = subprocess.run([str(BIN / "dlpipe"), "sql", statement, "--writable", "--set", f"data_dir={data_dir}"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert table_state(data_dir) == attack[3]



def ana(server: Server, *args: str) -> subprocess.CompletedProcess:
    """beeline as ana, the password read from a file (none on a command line, which `ps` shows)."""
    return beeline(server.port, "-n", "ana", "-w", str(server.password_file), *args)


def test_logins_beeline_reads_and_the_metastore_is_held(attack, server):
    """Only a user of the password file with the right password gets in; ana reads the predictions. The server
    holds the embedded metastore: another dlpipe command is refused at once, in one line that names it."""
    data_dir = attack[0]
    query = ("-e", "SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM predictions WHERE run_id = 'e2e-1'")
    for login in ([], ["-n", "ana", "-p", "wrong-horse"], ["-n", "carol", "-w", str(server.password_file)]):
        out = beeline(server.port, *login, *query)
        assert f"\n{ROWS}" not in out.stdout and "Peer indicated failure" in out.stdout + out.stderr, (
            login, out.stdout[-2000:], out.stderr[-2000:])
    got = ana(server, *query)
    lines = got.stdout.strip().splitlines()  # the header follows beeline's prompt on its line
    assert len(lines) >= 2, (got.stdout[-2000:], got.stderr[-3000:])
    assert lines[-2].endswith("n,runs") and lines[-1] == f"{ROWS},1", lines

    started = time.monotonic()
    blocked = subprocess.run([str(BIN / "dlpipe"), "sql", "SELECT 1", "--set", f"data_dir={data_dir}"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert blocked.returncode == 1 and time.monotonic() - started < 20, blocked.stderr
    assert blocked.stderr.startswith(f"dlpipe sql: error: the embedded metastore {data_dir / 'metastore_db'} is "
                                     f"open in process {server.pid} (dlpipe serve-sql "), blocked.stderr
    assert len(blocked.stderr.splitlines()) == 1, blocked.stderr


def test_beeline_gets_each_breach_refused_in_one_line_and_nothing_changes(attack, server):
    data_dir, secret, pwned, tables, files = attack
    statements = breaches(data_dir, secret, pwned)
    script = data_dir.parent / "breaches.sql"
    script.write_text("".join(f"{statement};\n" for statement, _ in statements))
    out = ana(server, "--force=true", "-f", str(script))
    found = errors(out)
    assert len(found) == len(statements), (out.stdout[-3000:], out.stderr[-3000:])
    for (statement, expected), error in zip(statements, found):
        assert expected in error, (statement, error)
    assert "\tat " not in out.stdout + out.stderr  # no Java stack trace
    assert "the secret" not in out.stdout + out.stderr and not pwned.exists()
    # a catalog or a setting passed when the connection opens, where no SET is parsed
    for option in (["--hiveconf", f"spark.sql.catalog.ms.url=jdbc:derby:{data_dir / 'metastore_db'}"],
                   ["--hivevar", "spark.sql.runSQLOnFiles=true"]):
        out = ana(server, *option, "-e", "SELECT * FROM text.`/etc/hostname`")
        assert "read-only SQL: the statement is refused: the session's setting" in out.stdout + out.stderr, option
    out = ana(server, "--silent=true", "--showHeader=false", "-e", "SHOW TABLES")
    shown = sorted(line.split(",")[1] for line in out.stdout.splitlines() if line.count(",") == 2)
    assert shown == sorted(tables), out.stdout  # the metastore names every table as before
    assert table_state(data_dir) == tables and sorted(p.name for p in data_dir.iterdir()) == files


def test_a_result_past_the_row_or_byte_limit_fails_in_one_line(server):
    out = ana(server, "--force=true", "-e", f"SELECT id FROM range({MAX_ROWS * 600})",
              "-e", f"SELECT id, repeat('x', 1000) FROM range({MAX_BYTES // 1000 + 10})")
    found = errors(out)
    assert len(found) == 2 and "\tat " not in out.stdout + out.stderr, out.stdout[-3000:]
    assert (f"dlpipe serve-sql: the query was stopped: its result has more than {MAX_ROWS:,} rows, the limit of "
            "the server (sql_server.max_result_rows)") in found[0]
    assert (f"its result has more than {MAX_BYTES:,} bytes as text, the limit of the server "
            "(sql_server.max_result_bytes)") in found[1]


def test_every_allowed_operator_and_the_docs_sql_run(server):
    script = server.password_file.parent / "allowed.sql"
    script.write_text("".join(f"{statement};\n" for statement, _ in ALLOWED))
    out = ana(server, "--force=true", "-f", str(script))
    assert errors(out) == [], (errors(out), out.stdout[-2000:])
    selected = [line for line in (out.stdout + out.stderr).splitlines()
                if "row selected" in line or "rows selected" in line or "No rows selected" in line]
    assert len(selected) == len(ALLOWED), selected
    for (statement, rows), line in zip(ALLOWED, selected):
        got = 0 if line.startswith("No rows") else int(line.split()[0])
        assert rows is ANY or rows is None and got > 0 or got == rows, (statement, line)
    assert "\n${env:HOME}\n" in out.stdout, out.stdout[-2000:]


def test_a_long_query_is_stopped_at_the_timeout_while_another_client_is_answered(server):
    query = ("-e", "SELECT count(*) FROM predictions WHERE run_id = 'e2e-1'")
    ana(server, *query)  # warm: the table's snapshot and the query's code
    long = {}
    started = time.monotonic()

    def long_query():
        long["out"] = ana(server, "-e", "SELECT count(*) FROM range(100000000) a CROSS JOIN range(100000000) b")
        long["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=long_query)
    thread.start()
    time.sleep(5)
    asked = time.monotonic()
    out = ana(server, "--silent=true", "--showHeader=false", *query)
    answered = time.monotonic() - asked
    assert value(out) == str(ROWS), out.stdout[-2000:]
    thread.join(timeout=TIMEOUT_S + 120)
    found = errors(long["out"])
    assert len(found) == 1 and ("dlpipe serve-sql: the query was stopped: it ran for 15 s, the limit of the server "
                                "(sql_server.query_timeout)") in found[0], long["out"].stdout[-2000:]
    assert answered < TIMEOUT_S - 5 and answered < long["seconds"], (answered, long["seconds"])


def test_repeated_wrong_logins_lock_the_user_out(server):
    query = ("-e", "SELECT 1")
    for _ in range(3):
        out = beeline(server.port, "-n", "bob", "-p", "wrong-horse", *query)
        assert "Error validating the login" in out.stdout + out.stderr, out.stdout[-2000:]
    out = beeline(server.port, "-n", "bob", "-w", str(server.password_file), *query)  # the right password, now refused
    assert "Error validating the login" in out.stdout + out.stderr, out.stdout[-2000:]
    assert value(ana(server, "--silent=true", "--showHeader=false", *query)) == "1"


def test_started_as_root_the_server_serves_as_another_user(server):
    """Like scripts/local-postgres: the server's process and its JVM run as sql_server.run_as (nobody)."""
    if os.geteuid() != 0:
        pytest.skip("the tests do not run as root")
    process = psutil.Process(server.pid)
    users = {p.uids().effective for p in [process, *process.children(recursive=True)]}
    assert users == {pwd.getpwnam("nobody").pw_uid}, users
