"""Stage ``generate``: write the synthetic HIGGS-shaped table (features.synthetic) as a Delta table."""
from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from dlpipe.features.synthetic import generate_events
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.stage import Stage, StageContext, StageOutputs, StagePlan, section
from dlpipe.pipelines.tables import delta_version


@dataclass(frozen=True)
class GenerateResult:
    table: str
    version: int
    rows: int
    seconds: float


def run(spark: SparkSession, cfg: Config) -> GenerateResult:
    started = time.time()
    gen = cfg.generate
    events = generate_events(spark, rows=gen.rows, seed=gen.seed, partitions=gen.partitions, null_rate=gen.null_rate,
                             shift=gen.shift)
    table = cfg.qualified(gen.output_table)
    events.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(table)
    result = GenerateResult(table, delta_version(spark, table), gen.rows, time.time() - started)
    moved = f", shifted: {', '.join(gen.shift)}" if gen.shift else ""
    print(f"generate: wrote {result.rows:,} rows to {table} (Delta version {result.version}{moved}) in "
          f"{result.seconds:.1f}s")
    return result


def plan(spark: SparkSession, cfg: Config, ctx: StageContext) -> StagePlan:
    return StagePlan("generate", [], {"generate": section(cfg.generate), "table": cfg.qualified(cfg.generate.output_table)})


def outputs(cfg: Config, result: GenerateResult) -> StageOutputs:
    return StageOutputs([{"kind": "table", "name": result.table, "version": result.version}], result.rows, {})


STAGE = Stage(
    name="generate",
    help="write the synthetic HIGGS-shaped data set (generate.*) as a Delta table",
    plan=plan,
    run=lambda spark, cfg, ctx: run(spark, cfg),
    outputs=outputs,
)
