"""The team set-up (docs/team.md): a shared metastore in PostgreSQL, started with scripts/local-postgres as users
start it, and `dlpipe serve-sql` answering analysts while pipelines write."""
from __future__ import annotations

import os
import re
import subprocess

import psutil
import pytest

from tests.pipelines.cli import BIN, REPO, ROWS, ok, settings
from tests.thrift import beeline, serving

pytestmark = pytest.mark.slow
# Each test's tables in a database of its own: a database stays in the warehouse of the data folder it was
# created from, whichever data folder later commands name.
DATABASE = "team"


def dlpipe(*args: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dlpipe"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def predictions_per_run(port: int) -> dict[str, int] | None:
    """run id -> rows in the predictions table, as an analyst's beeline sees it (None: no table yet)."""
    out = beeline(port, "--silent=true", "--showHeader=false", "-e",
                  "SELECT run_id, count(*) FROM predictions GROUP BY run_id", database=DATABASE)
    if "TABLE_OR_VIEW_NOT_FOUND" in out.stdout + out.stderr:
        return None
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # (the first row follows beeline's prompt on its line)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"([\w-]+),(\d+)$", out.stdout, re.MULTILINE)}


def test_serve_sql_stays_up_and_beeline_sees_whole_snapshots_while_a_pipeline_writes(shared_metastore, tmp_path):
    """Run team-1 on the shared metastore; then, while `dlpipe serve-sql` serves, run team-2 (every stage again,
    for the next date) and poll the predictions through beeline: each poll sees team-1's rows, then team-1's and
    team-2's, never a part. The metastore password is in no file, log, table, report or command line."""
    data_dir = tmp_path / "var"
    env = shared_metastore.env
    args = settings(data_dir, shared_metastore.setting(), f"database={DATABASE}")
    outputs = [ok(dlpipe("run", *args, "--run-id", "team-1", "--date", "2026-11-01", env=env))]

    with serving(*args, env=env) as (server, port, _):
        command_lines = [" ".join(p.cmdline()) for p in psutil.Process(server.pid).children(recursive=True)
                         if p.status() != psutil.STATUS_ZOMBIE]
        assert any("java" in line for line in command_lines), command_lines

        job = subprocess.Popen([str(BIN / "dlpipe"), "run", *args, "--run-id", "team-2", "--date", "2026-11-02",
                                "--force"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **env})
        polls = []
        while job.poll() is None:
            polls.append(predictions_per_run(port))
        out, err = job.communicate()
        assert job.returncode == 0, out[-3000:] + err[-3000:]
        outputs.append(subprocess.CompletedProcess(job.args, 0, out, err))
        after = predictions_per_run(port)

        before, both = {"team-1": ROWS}, {"team-1": ROWS, "team-2": ROWS}
        partial = [p for p in polls if p not in (before, both)]
        print(f"team set-up: {len(polls)} beeline polls while team-2 ran, {len(partial)} saw a partial snapshot, "
              f"{sum(p == both for p in polls)} saw team-2's rows")
        assert len(polls) >= 3 and not partial, polls
        assert after == both and server.poll() is None

        # two infers for two dates into the same predictions table at once: both land, each with all its rows
        days = ("2026-11-03", "2026-11-04")
        infers = [subprocess.Popen([str(BIN / "dlpipe"), "infer", *args, "--run-id", f"day-{day}", "--date", day],
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env}) for day in days]
        for infer in infers:
            out, err = infer.communicate(timeout=900)
            assert infer.returncode == 0, out[-3000:] + err[-3000:]
            outputs.append(subprocess.CompletedProcess(infer.args, 0, out, err))
        retried = sum(o.stdout.count("writing again") for o in outputs[-2:])
        landed = predictions_per_run(port)
        print(f"team set-up: two concurrent infers, {retried} conflicts retried, rows per run {landed}")
        assert landed == {**both, **{f"day-{day}": ROWS for day in days}}, landed

        runs = beeline(port, "-e", "SELECT * FROM runs", database=DATABASE)
        assert runs.returncode == 0 and "team-2" in runs.stdout, runs.stderr[-2000:]

    # the password: in the environment only, never written or shown
    secret = shared_metastore.password
    assert (data_dir / "runs" / "team-2" / "report.html").is_file()
    assert (data_dir / "warehouse" / f"{DATABASE}.db" / "predictions" / "_delta_log").is_dir()  # grepped too
    written = [path for path in data_dir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert not written, written
    shown = [o.args for o in outputs if secret in o.stdout + o.stderr] + ["runs table"] * (secret in runs.stdout)
    assert not shown and not any(secret in line for line in command_lines), shown
    assert not [p for p in (REPO / "conf").rglob("*") if p.is_file() and secret in p.read_text()]


def test_two_teams_run_at_once_on_one_metastore_and_warehouse(shared_metastore, tmp_path):
    """Two namespaces' pipelines at the same time on one metastore and data folder: both succeed, and each team's
    tables, runs, artifacts and models hold its own run only."""
    data_dir = tmp_path / "var"
    teams = ("alpha", "beta")
    jobs = {team: subprocess.Popen([str(BIN / "dlpipe"), "run",
                                    *settings(data_dir, shared_metastore.setting(), f"namespace={team}"),
                                    "--run-id", f"{team}-1", "--date", "2026-11-01"],
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **shared_metastore.env}) for team in teams}
    for job in jobs.values():
        out, err = job.communicate(timeout=1200)
        assert job.returncode == 0, out[-3000:] + err[-3000:]

    seen = data_dir.parent / "seen.csv"
    query = " UNION ALL ".join(
        f"SELECT '{team}' AS team, 'runs' AS t, run_id FROM {team}__dlpipe.runs UNION ALL "
        f"SELECT '{team}', 'predictions', run_id FROM {team}__dlpipe.predictions" for team in teams)
    ok(dlpipe("sql", f"SELECT DISTINCT * FROM ({query})", "--output", str(seen), "--set", f"data_dir={data_dir}",
              "--set", shared_metastore.setting(), env=shared_metastore.env))
    rows = set(seen.read_text().splitlines()[1:])
    assert rows == {f'"{team}","{t}","{team}-1"' for team in teams for t in ("runs", "predictions")}, rows
    for team in teams:
        models = list((data_dir / "namespaces" / team / "models").rglob("metadata.json"))
        assert models and all(f'"{team}-1"' in m.read_text() for m in models), models
        assert list((data_dir / "namespaces" / team / "artifacts").iterdir())
