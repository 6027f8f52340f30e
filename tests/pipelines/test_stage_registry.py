"""A stage is one object: a new one is a module with its ``STAGE`` and its name in the config's stage list, and the
runner records, skips and hands it on, and lineage follows it, with nothing else changed. Checked with a toy stage
``count_rows`` (the row count of the raw table, as a Delta table) added to the in-process run's pipeline."""
from __future__ import annotations

import sys
import types

import pytest

from dlpipe.pipelines import lineage, run, stage, tracking
from dlpipe.pipelines.config import schema
from dlpipe.pipelines.stage import Stage, StageOutputs, StagePlan, source_input
from dlpipe.pipelines.tables import delta_version


def count_rows_module() -> types.ModuleType:
    """What ``pipelines/count_rows.py`` would hold."""
    def plan(spark, cfg, ctx):
        entry, identity = source_input(spark, cfg, cfg.infer.input)
        return StagePlan("count_rows", [entry], {"input": identity, "table": cfg.qualified("row_counts")})

    def run_stage(spark, cfg, ctx):
        table = cfg.qualified("row_counts")
        rows = spark.table(cfg.qualified(cfg.infer.input.table)).count()
        spark.createDataFrame([(ctx.run_id, rows)], "run_id string, rows long").write.format("delta") \
            .mode("overwrite").saveAsTable(table)
        return table, delta_version(spark, table), rows

    def outputs(cfg, result):
        table, version, rows = result
        return StageOutputs([{"kind": "table", "name": table, "version": version}], rows, {"rows": float(rows)})

    module = types.ModuleType("dlpipe.pipelines.count_rows")
    module.STAGE = Stage(name="count_rows", help="count the raw table's rows", plan=plan, run=run_stage,
                         outputs=outputs, key_metrics=("rows",), counts=("rows",))
    return module


@pytest.fixture
def with_count_rows(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlpipe.pipelines.count_rows", count_rows_module())
    monkeypatch.setattr(schema, "STAGES", (*schema.STAGES, "count_rows"))
    stage.registry.cache_clear()
    yield
    stage.registry.cache_clear()


def test_a_new_stage_runs_is_recorded_skipped_and_followed_by_lineage(spark, in_process_run, with_count_rows,
                                                                      capsys):
    cfg = in_process_run.cfg
    first = run.run(spark, cfg, run_id="count-1", stages=["count_rows"])
    assert first.outcomes["count_rows"].status == "succeeded"
    assert first.outcomes["count_rows"].rows == spark.table(cfg.qualified("raw_events")).count()
    assert run.key_metric(first.outcomes["count_rows"]) == f"rows {first.outcomes['count_rows'].rows:,}"

    again = run.run(spark, cfg, run_id="count-2", stages=["count_rows"])
    assert again.outcomes["count_rows"].status == "skipped" and again.outcomes["count_rows"].reused_run == "count-1"
    assert "count_rows: skipped: inputs and settings unchanged since run count-1" in capsys.readouterr().out

    history = tracking.records(spark, cfg)
    tree = lineage.lines(history, lineage.target(cfg, history, "row_counts", None))
    assert tree[0].startswith("table in_process.row_counts version 0  <- count_rows, run count-1")
    assert tree[1].startswith("  table in_process.raw_events version 0  <- generate, run in-process")
