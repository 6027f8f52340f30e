"""The team set-up (docs/team.md): a shared metastore in PostgreSQL, started with scripts/local-postgres as users
start it, and `dlpipe serve-sql` answering analysts while pipelines write. One scenario, since each step needs
the pipelines of the one before."""
from __future__ import annotations

import os
import re
import subprocess
import time

import psutil
import pytest

from tests.pipelines.cli import BIN, REPO, ROWS, settings
from tests.thrift import beeline, serving

pytestmark = pytest.mark.slow
TEAMS = ("alpha", "beta")  # two namespaces: each its own database (alpha__dlpipe), models and artifacts
POLL_PAUSE_S = 4


def dlpipe(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dlpipe"), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})


def finished(job: subprocess.Popen, timeout: int = 1200) -> subprocess.CompletedProcess:
    out, err = job.communicate(timeout=timeout)
    assert job.returncode == 0, out[-3000:] + err[-3000:]
    return subprocess.CompletedProcess(job.args, 0, out, err)


def predictions_per_run(port: int, database: str) -> dict[str, int] | None:
    """run id -> rows in the predictions table, as an analyst's beeline sees it (None: no table yet)."""
    out = beeline(port, "--silent=true", "--showHeader=false", "-e",
                  "SELECT run_id, count(*) FROM predictions GROUP BY run_id", database=database)
    if "TABLE_OR_VIEW_NOT_FOUND" in out.stdout + out.stderr:
        return None
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # (the first row follows beeline's prompt on its line)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"([\w-]+),(\d+)$", out.stdout, re.MULTILINE)}


def test_two_teams_at_once_then_sql_stays_up_and_sees_whole_snapshots_while_pipelines_write(shared_metastore,
                                                                                                 tmp_path):
    """On one shared metastore and data folder: the pipelines of two namespaces at the same time, each seeing only
    its own tables, runs, artifacts and models. Then, while `dlpipe serve-sql` serves alpha, a `dlpipe run` of
    infer and evaluate and an infer alone, for two more dates, write alpha's predictions table at once, and
    beeline polls it: each poll sees whole runs (alpha-1's rows, then one or both days' too), never a part; both
    land with all their rows. The metastore password is in no file, log, table, report or command line."""
    data_dir, env = tmp_path / "var", shared_metastore.env
    args = {team: settings(data_dir, shared_metastore.setting(), f"namespace={team}") for team in TEAMS}
    jobs = [dlpipe("run", *args[team], "--run-id", f"{team}-1", "--date", "2026-11-01", env=env) for team in TEAMS]
    outputs = [finished(job) for job in jobs]

    seen = data_dir.parent / "seen.csv"
    query = " UNION ALL ".join(
        f"SELECT '{team}' AS team, 'runs' AS t, run_id FROM {team}__dlpipe.runs UNION ALL "
        f"SELECT '{team}', 'predictions', run_id FROM {team}__dlpipe.predictions" for team in TEAMS)
    outputs.append(finished(dlpipe("sql", f"SELECT DISTINCT * FROM ({query})", "--output", str(seen), "--set",
                                   f"data_dir={data_dir}", "--set", shared_metastore.setting(), env=env)))
    rows = set(seen.read_text().splitlines()[1:])
    assert rows == {f'"{team}","{t}","{team}-1"' for team in TEAMS for t in ("runs", "predictions")}, rows
    for team in TEAMS:
        models = list((data_dir / "namespaces" / team / "models").rglob("metadata.json"))
        assert models and all(f'"{team}-1"' in m.read_text() for m in models), models
        assert list((data_dir / "namespaces" / team / "artifacts").iterdir())

    database = "alpha__dlpipe"
    with serving(*args["alpha"], env=env) as (server, port, _):
        command_lines = [" ".join(p.cmdline()) for p in psutil.Process(server.pid).children(recursive=True)
                         if p.status() != psutil.STATUS_ZOMBIE]
        assert any("java" in line for line in command_lines), command_lines

        # two writers for two dates into the same predictions table at once, polled by an analyst meanwhile: a
        # scheduled `dlpipe run` of infer and evaluate (its runs, metrics and report), and an infer alone
        days = ("2026-11-03", "2026-11-04")
        writers = [dlpipe("run", *args["alpha"], "--stages", "infer,evaluate", "--run-id", f"day-{days[0]}", "--date",
                         days[0], env=env),
                  dlpipe("infer", *args["alpha"], "--run-id", f"day-{days[1]}", "--date", days[1], env=env)]
        polls = []
        while any(writer.poll() is None for writer in writers):  # each poll starts a beeline JVM: a pause between
            polls.append(predictions_per_run(port, database))  # them leaves the writers the cores
            time.sleep(POLL_PAUSE_S)
        outputs += [finished(writer, timeout=900) for writer in writers]
        landed = predictions_per_run(port, database)

        whole = [{"alpha-1": ROWS, **{f"day-{day}": ROWS for day in written}}
                 for written in ((), days[:1], days[1:], days)]
        partial = [p for p in polls if p not in whole]
        retried = sum(o.stdout.count("writing again") for o in outputs[-2:])
        print(f"team set-up: {len(polls)} beeline polls while two runs wrote, {len(partial)} saw a partial "
              f"snapshot, {sum(p != whole[0] for p in polls)} saw a day's rows; {retried} conflicts retried")
        assert len(polls) >= 3 and not partial, polls
        assert landed == whole[-1] and server.poll() is None, landed

        runs = beeline(port, "-e", "SELECT * FROM runs", database=database)
        assert runs.returncode == 0 and f"day-{days[0]}" in runs.stdout, runs.stderr[-2000:]
        assert predictions_per_run(port, "beta__dlpipe") == {"beta-1": ROWS}  # alpha's runs reached alpha's only

    # the password: in the environment only, never written or shown
    secret = shared_metastore.password
    assert (data_dir / "namespaces" / "alpha" / "runs" / "day-2026-11-03" / "report.html").is_file()
    assert (data_dir / "warehouse" / f"{database}.db" / "predictions" / "_delta_log").is_dir()  # grepped too
    written = [path for path in data_dir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert not written, written
    shown = [o.args for o in outputs if secret in o.stdout + o.stderr] + ["runs table"] * (secret in runs.stdout)
    assert not shown and not any(secret in line for line in command_lines), shown
    assert not [p for p in (REPO / "conf").rglob("*") if p.is_file() and secret in p.read_text()]
