"""The runs table: one Delta table per database that records every stage a pipeline ran, skipped or failed.

Each stage appends a ``running`` row when it starts and a ``succeeded``, ``skipped`` or ``failed`` row when it
ends (appends never conflict in Delta, so concurrent runs can record at once). A row holds what the stage read
(``inputs``) and wrote (``outputs``), both JSON lists of ``{"kind", "name", "version", ...}`` entries that lineage
follows, the hash of the stage's inputs and settings (``stage_key``: equal keys mean the stage would write the
same thing again), the hash of the whole run's config (``config_hash``), row counts, metrics and the config itself.
A stage killed with its process keeps its ``running`` row: ``dlpipe runs`` shows it as such.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import subprocess
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dlpipe.pipelines.config import TRAIN_EXECUTION_KEYS, Config

RUNS_SCHEMA = (
    "run_id string, stage string, attempt string, status string, run_date date, started_at timestamp, "
    "ended_at timestamp, seconds double, stage_key string, config_hash string, inputs string, outputs string, "
    "rows long, metrics map<string, double>, reused_run string, message string, git_commit string, user string, "
    "config string"
)
FINAL = ("succeeded", "skipped", "failed")
COMPACT_EVERY = 200  # rows (a run of 5 stages writes 6 to 10 of them, in 3 to 6 commits)
# Settings of how a run executes, not of what it computes: a run id may be resumed with other values of these.
EXECUTION_SECTIONS = {"spark", "sql_server", "metastore", "tune", "stages", "source_files"}


def config_document(cfg: Config) -> dict:
    """The config as plain JSON data, without the settings that only say how a run executes."""
    document = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    document = {k: v for k, v in document.items() if k not in EXECUTION_SECTIONS}
    document["train"] = {k: v for k, v in document["train"].items() if k not in TRAIN_EXECUTION_KEYS}
    return document


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def digest(document) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(old, new, prefix: str = "") -> list[str]:
    """``key old -> new`` for every leaf that differs between two JSON documents."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return found
    return [] if old == new else [f"{prefix} {json.dumps(old)} -> {json.dumps(new)}"]


@dataclass
class StageRecord:
    """One row of the runs table."""

    run_id: str
    stage: str
    attempt: str
    status: str
    run_date: dt.date | None
    started_at: dt.datetime
    stage_key: str
    config_hash: str
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    ended_at: dt.datetime | None = None
    rows: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reused_run: str | None = None
    message: str | None = None
    git_commit: str | None = None
    config: str | None = None

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def as_row(self) -> tuple:
        return (self.run_id, self.stage, self.attempt, self.status, self.run_date, self.started_at, self.ended_at,
                self.seconds, self.stage_key, self.config_hash, json.dumps(self.inputs), json.dumps(self.outputs),
                self.rows, {k: float(v) for k, v in self.metrics.items() if v is not None}, self.reused_run,
                self.message, self.git_commit, getpass.getuser(), self.config)

    @classmethod
    def from_row(cls, row) -> "StageRecord":
        return cls(run_id=row["run_id"], stage=row["stage"], attempt=row["attempt"], status=row["status"],
                   run_date=row["run_date"], started_at=row["started_at"], stage_key=row["stage_key"],
                   config_hash=row["config_hash"], inputs=json.loads(row["inputs"] or "[]"),
                   outputs=json.loads(row["outputs"] or "[]"), ended_at=row["ended_at"], rows=row["rows"],
                   metrics=dict(row["metrics"] or {}), reused_run=row["reused_run"], message=row["message"],
                   git_commit=row["git_commit"], config=row["config"])


def now() -> dt.datetime:
    """UTC wall time without a zone, as Spark's timestamp columns hold it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def runs_table(cfg: Config) -> str:
    return cfg.qualified(cfg.runs_table)


def append(spark: SparkSession, cfg: Config, entries: list[StageRecord]) -> None:
    """Append rows in one Delta commit, as one data file (the table is created by the first append).

    The table is always read whole, so it keeps no data-skipping statistics (0.1 s less per commit), and Delta
    checkpoints its log every 100 commits, not 10: writing a checkpoint cost a run 2.2 s every other time, and
    reading 45 commit files was quicker than a checkpoint and 5 (5.3 s against 6.0 s in a fresh session)."""
    if not entries:
        return
    table = runs_table(cfg)
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({RUNS_SCHEMA}) USING delta TBLPROPERTIES ("
              "'delta.dataSkippingNumIndexedCols' = '0', 'delta.checkpointInterval' = '100')")
    (spark.createDataFrame([e.as_row() for e in entries], RUNS_SCHEMA).coalesce(1)
     .write.format("delta").mode("append").saveAsTable(table))


def compact(spark: SparkSession, cfg: Config, rows_before: int, rows_after: int) -> bool:
    """Rewrite the runs table's files into one (Delta ``OPTIMIZE``) each time it has grown by ``COMPACT_EVERY``
    rows: every commit adds a small file, and a read of thousands of them takes seconds. (Delta's own auto
    compaction rewrote the table after every commit here, 1-3 s each.) Appends of other runs may go on meanwhile."""
    if rows_before // COMPACT_EVERY == rows_after // COMPACT_EVERY:
        return False
    spark.sql(f"OPTIMIZE {runs_table(cfg)}")
    return True


def records(spark: SparkSession, cfg: Config, where: str | None = None, limit: int | None = None) -> list[StageRecord]:
    """Rows of the runs table (newest first), optionally filtered by a SQL condition built from checked values."""
    table = runs_table(cfg)
    if not spark.catalog.tableExists(table):
        return []
    df = spark.table(table)
    if where:
        df = df.where(where)
    df = df.orderBy(F.desc("started_at"), F.desc(F.coalesce("ended_at", "started_at")))
    if limit:
        df = df.limit(limit)
    return [StageRecord.from_row(r) for r in df.collect()]


def latest_per_stage(entries: list[StageRecord]) -> list[StageRecord]:
    """The last row of each (run, stage, attempt): a stage's final status, or ``running`` if it never ended."""
    latest: dict[tuple, StageRecord] = {}
    for entry in entries:
        key = (entry.run_id, entry.stage, entry.attempt)
        held = latest.get(key)
        if held is None or (entry.status in FINAL and held.status not in FINAL):
            latest[key] = entry
    return sorted(latest.values(), key=lambda e: e.started_at, reverse=True)
