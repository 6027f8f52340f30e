"""``dlpipe run``: the pipeline's stages in order under one run id, each recorded in the runs table.

The stages come from the registry (``pipelines.stage``); nothing here names one. A stage whose plan (config
section and exact input versions) equals that of an
earlier successful run, whose outputs are still there unchanged, is skipped and reuses those outputs; ``force``
redoes it. A run that failed in a stage is resumed by running it again with the same run id: the stages that
succeeded are skipped, the failed one starts again (training from its last checkpoint). A run id that was used
with another config is refused unless ``force``. So a scheduler may retry a run for a logical date at any time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import SparkSession

from dlpipe.features.errors import FeatureError
from dlpipe.pipelines import termination, tracking
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError, spark_failure
from dlpipe.pipelines.run_id import check_run_id, new_run_id, run_folder, selected_stages
from dlpipe.pipelines.stage import StageContext, StagePlan, handoff_of, outputs_changed, registry, stage
from dlpipe.pipelines.tracking import StageRecord, config_document, differences, digest, git_commit, now


@dataclass
class StageOutcome:
    stage: str
    status: str                # succeeded, skipped or failed
    seconds: float             # wall time of the stage, planning and recording included
    work_seconds: float        # of which the stage's own work (0 when skipped)
    rows: int | None
    metrics: dict[str, float]
    reused_run: str | None = None


@dataclass
class RunResult:
    run_id: str
    run_date: dt.date
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def seconds_per_stage(self) -> dict[str, float]:
        return {stage: o.seconds for stage, o in self.outcomes.items()}


def check_same_config(run_id: str, history: list[StageRecord], config_hash: str, document: dict) -> None:
    """Refuse a run id that already ran with another config: its outputs would mix two configs."""
    other = next((r for r in history if r.run_id == run_id and r.config_hash != config_hash), None)
    if other is None:
        return
    changed = differences(json.loads(other.config or "{}"), document)
    shown = "; ".join(changed[:3]) + (f"; {len(changed) - 3} more" if len(changed) > 3 else "")
    raise PipelineError(f"run {run_id} was run with a different config ({shown or 'the config hash differs'}): "
                        "use a new --run-id, or --force to redo it with this config")


def reusable(spark: SparkSession, cfg: Config, history: list[StageRecord], name: str,
             key: str) -> tuple[StageRecord | None, str | None]:
    """(the latest successful run of stage ``name`` with this key whose outputs are still there, why not otherwise)."""
    earlier = next((r for r in history if r.stage == name and r.status == "succeeded" and r.stage_key == key), None)
    if earlier is None:
        return None, None
    changed = outputs_changed(spark, cfg, earlier.outputs)
    return (None, changed) if changed else (earlier, None)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, run_date: dt.date | None = None,
        stages: list[str] | None = None, force: bool = False) -> RunResult:
    started = time.time()
    chosen = selected_stages(cfg, stages)
    run_id = check_run_id(run_id or new_run_id())
    run_date = run_date or now().date()
    document = config_document(cfg)
    config_hash = digest(document)
    history = tracking.records(spark, cfg)
    if not force:
        check_same_config(run_id, history, config_hash, document)
    handoff: dict[str, str] = {}
    for entry in reversed(history):  # what this run's earlier attempts handed over (a resumed or partial run)
        if entry.run_id == run_id and entry.status in ("succeeded", "skipped"):
            handoff.update(handoff_of(entry.stage, entry.outputs))

    result = RunResult(run_id, run_date)
    base = StageRecord(run_id=run_id, stage="", attempt=uuid.uuid4().hex[:12], status="running", run_date=run_date,
                       started_at=now(), stage_key="", config_hash=config_hash, git_commit=git_commit(),
                       config=json.dumps(document))
    print(f"run {run_id} (run_date {run_date}): stages {', '.join(chosen)}" + (" (--force: none skipped)" if force else ""))
    name = chosen[0]
    writer = RunsTableWriter(spark, cfg)
    try:
        for name in chosen:
            termination.check()  # a SIGTERM between stages: the next one does not start
            _run_stage(spark, cfg, name, base, history, handoff, result, writer, force)
    except BaseException:
        print(f"run {run_id} stopped in {name}: the same command with --run-id {run_id} resumes it there "
              "(the stages that finished are skipped)")
        raise
    finally:
        writer.flush()
        _compact(spark, cfg, len(history), len(history) + len(writer.written))
        result.seconds = time.time() - started
        print(summary_table(result))
        reported = time.time()
        _write_report(spark, cfg, run_id, [e for e in history if e.run_id == run_id] + writer.written)
        save_summary(cfg, result, report_seconds=time.time() - reported)
    _where_things_are(cfg, result, handoff)
    return result


class RunsTableWriter:
    """Writes a run's rows to the runs table, buffered: a stage's final row waits for the next stage's first row and
    both go in one commit (a commit costs about half a second, whatever it holds); ``flush`` writes what waits."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark, self.cfg = spark, cfg
        self.waiting: list[StageRecord] = []
        self.written: list[StageRecord] = []

    def hold(self, entry: StageRecord) -> None:
        self.waiting.append(entry)

    def write(self, entry: StageRecord | None = None) -> None:
        batch = self.waiting + ([entry] if entry else [])
        tracking.append(self.spark, self.cfg, batch)
        self.waiting = []
        self.written += batch

    def flush(self) -> None:
        """Write what waits, if Spark still can (a Ctrl-C may have stopped it)."""
        if not self.waiting:
            return
        try:
            self.write()
        except Exception as err:  # noqa: BLE001 - the run's own outcome (or error) comes first
            stages = ", ".join(e.stage for e in self.waiting)
            print(f"could not record {stages} in the runs table: {type(err).__name__}")


def _run_stage(spark: SparkSession, cfg: Config, name: str, base: StageRecord, history: list[StageRecord],
               handoff: dict[str, str], result: RunResult, writer: RunsTableWriter, force: bool) -> None:
    started = time.time()
    definition = stage(name)
    ctx = StageContext(base.run_id, base.run_date, dict(handoff), fresh=force)
    plan = definition.plan(spark, cfg, ctx)
    ctx = dataclasses.replace(ctx, plan=plan)
    entry = dataclasses.replace(base, stage=name, started_at=now(), stage_key=plan.key, inputs=plan.inputs)
    earlier, changed = (None, None) if force else reusable(spark, cfg, history, name, plan.key)
    if earlier is not None:
        entry = dataclasses.replace(entry, status="skipped", outputs=earlier.outputs, rows=earlier.rows,
                                    metrics=earlier.metrics, reused_run=earlier.run_id, ended_at=now())
        writer.hold(entry)
        print(f"{name}: skipped: inputs and settings unchanged since run {earlier.run_id} "
              f"({earlier.ended_at:%Y-%m-%d %H:%M} UTC), its outputs are reused (--force redoes it)")
        handoff.update(definition.hands_on(entry.outputs))
        result.outcomes[name] = StageOutcome(name, "skipped", time.time() - started, 0.0, entry.rows,
                                             entry.metrics, earlier.run_id)
        return
    writer.write(entry)  # the running row, with the row of the stage before
    print(f"{name}: starting" + (f" again: {changed}" if changed else ""))
    work_started = time.time()
    try:
        outcome = _attempt(writer, entry, lambda: definition.run(spark, cfg, ctx))
    except BaseException:  # the run's summary shows the stage it stopped in
        result.outcomes[name] = StageOutcome(name, "failed", time.time() - started, time.time() - work_started,
                                             None, {})
        raise
    work = time.time() - work_started
    produced = definition.outputs(cfg, outcome)
    writer.hold(dataclasses.replace(entry, status="succeeded", outputs=produced.entries, rows=produced.rows,
                                  metrics=produced.metrics, ended_at=now()))
    handoff.update(definition.hands_on(produced.entries))
    result.results[name] = outcome
    result.outcomes[name] = StageOutcome(name, "succeeded", time.time() - started, work, produced.rows,
                                         produced.metrics)


def _attempt(writer: RunsTableWriter, entry: StageRecord, call: Callable[[], object]):
    """Do ``call`` (``entry``, the stage's running row, is recorded); if it fails, record the failure with the
    error's first line."""
    try:
        return call()
    except BaseException as err:
        if termination.requested():
            message = termination.MESSAGE
        else:
            message = spark_failure(err) or (str(err).strip().splitlines()[0] if str(err).strip()
                                             else type(err).__name__)
        writer.hold(dataclasses.replace(entry, status="failed", ended_at=now(), message=message))
        writer.flush()
        raise


def run_stage(spark: SparkSession, cfg: Config, name: str, run_id: str, run_date: dt.date | None = None,
              handoff: dict[str, str] | None = None):
    """One stage as its own command (``dlpipe train`` ...): always runs, and is recorded in the runs table like a
    stage of ``dlpipe run`` (so a later ``dlpipe run`` may reuse what it wrote, and lineage can follow it).
    ``handoff``: what the command line gives it in place of earlier stages (``dlpipe evaluate --run-id``: the run
    whose predictions it evaluates)."""
    definition = stage(name)
    ctx = StageContext(run_id, run_date or now().date(), dict(handoff or {}), alone=True)
    document = config_document(cfg)
    try:
        plan = definition.plan(spark, cfg, ctx)
    except (PipelineError, FeatureError):  # the stage itself says what is wrong, in its own words
        plan = StagePlan(name, [], {"unplanned": True})
    ctx = dataclasses.replace(ctx, plan=plan)
    entry = StageRecord(run_id=run_id, stage=name, attempt=uuid.uuid4().hex[:12], status="running",
                        run_date=ctx.run_date, started_at=now(), stage_key=plan.key, config_hash=digest(document),
                        inputs=plan.inputs, git_commit=git_commit(), config=json.dumps(document))
    writer = RunsTableWriter(spark, cfg)
    writer.write(entry)
    outcome = _attempt(writer, entry, lambda: definition.run(spark, cfg, ctx))
    produced = definition.outputs(cfg, outcome)
    writer.write(dataclasses.replace(entry, status="succeeded", outputs=produced.entries, rows=produced.rows,
                                   metrics=produced.metrics, ended_at=now()))
    return outcome


def key_metric(outcome: StageOutcome) -> str:
    known = registry().get(outcome.stage)
    return known.key_metric(outcome.metrics) if known else ""


def summary_table(result: RunResult) -> str:
    rows = [("stage", "status", "seconds", "rows", "key metric")]
    for o in result.outcomes.values():
        status = f"skipped (run {o.reused_run})" if o.status == "skipped" else o.status
        rows.append((o.stage, status, f"{o.seconds:.1f}", f"{o.rows:,}" if o.rows is not None else "", key_metric(o)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"\nrun {result.run_id} (run_date {result.run_date}): {len(result.outcomes)} stages in {result.seconds:.1f}s"]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(c.rjust(w) if j in (2, 3) else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_summary(cfg: Config, result: RunResult, report_seconds: float | None = None) -> Path:
    """``runs/<run id>/summary-<time>.json``: the per-stage timings of one invocation (benchmarks and reports)."""
    folder = run_folder(cfg, result.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"summary-{now():%Y%m%dT%H%M%S%f}.json"
    path.write_text(json.dumps({
        "run_id": result.run_id, "run_date": str(result.run_date), "seconds": result.seconds,
        "report_seconds": report_seconds,
        "stages": [dataclasses.asdict(o) for o in result.outcomes.values()],
    }, indent=2) + "\n")
    return path


def _compact(spark: SparkSession, cfg: Config, rows_before: int, rows_after: int) -> None:
    try:
        tracking.compact(spark, cfg, rows_before, rows_after)
    except Exception as err:  # noqa: BLE001 - a later run compacts it
        print(f"runs table not compacted this time: {type(err).__name__}")


def _write_report(spark: SparkSession, cfg: Config, run_id: str, entries: list[StageRecord]) -> None:
    """The run's HTML report, as ``dlpipe report`` writes it from the runs table (here from the rows of this run
    already in hand). A failed run gets one too."""
    from dlpipe.pipelines import report

    try:
        report.write(spark, cfg, run_id, entries=entries)
    except Exception as err:  # noqa: BLE001 - the run's own outcome matters more than its report
        print(f"report: not written ({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})")


def _where_things_are(cfg: Config, result: RunResult, handoff: dict[str, str]) -> None:
    for name, outcome in result.outcomes.items():
        closing = stage(name).closing
        line = closing(cfg, outcome, handoff) if closing else None
        if line:
            print(line)
    print(f"outputs under {cfg.data_path}: tables in {cfg.data_path / 'warehouse'}, models in "
          f"{cfg.outputs_path / 'models'}; log and report of this run in {run_folder(cfg, result.run_id)}; "
          "`dlpipe runs` lists runs")
