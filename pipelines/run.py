"""All stages in order, as ``stages`` in the config lists them, sharing one Spark session and one run id."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import SparkSession

from pipelines import evaluate, featurize, generate, infer, sql, train
from pipelines.config import Config
from pipelines.run_id import check_run_id, new_run_id


@dataclass
class RunResult:
    run_id: str
    seconds_per_stage: dict[str, float] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)


def stage_calls(spark: SparkSession, cfg: Config, run_id: str,
                run_date: dt.date | None = None) -> dict[str, Callable[[], object]]:
    """Each stage of ``cfg.stages``, in order, as a call that runs it with this session, config and run id."""
    calls = {
        "generate": lambda: generate.run(spark, cfg),
        "featurize": lambda: featurize.run(spark, cfg),
        "train": lambda: train.run(spark, cfg, run_id=run_id),
        "infer": lambda: infer.run(spark, cfg, run_id=run_id, run_date=run_date),
        "evaluate": lambda: evaluate.run(spark, cfg, run_id=run_id),
    }
    return {stage: calls[stage] for stage in cfg.stages}


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, run_date: dt.date | None = None) -> RunResult:
    result = RunResult(run_id=check_run_id(run_id or new_run_id()))
    for stage, call in stage_calls(spark, cfg, result.run_id, run_date).items():
        started = time.time()
        result.results[stage] = call()
        result.seconds_per_stage[stage] = time.time() - started

    predictions = cfg.qualified(cfg.infer.output_table)
    if "infer" in cfg.stages:
        query = (f"SELECT predicted_label, count(*) AS rows, round(avg(score), 4) AS mean_score "
                 f"FROM {predictions} WHERE run_id = '{result.run_id}' GROUP BY predicted_label ORDER BY predicted_label")
        print(f"\nSQL> {query}")
        sql.run(spark, cfg, query)
    print(f"\nrun {result.run_id} done: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds_per_stage.items()))
    print(f"outputs under {cfg.data_path}: tables in {cfg.data_path / 'warehouse'}, metastore {cfg.data_path / 'metastore_db'}, "
          f"models in {cfg.outputs_path / 'models'}, feature artifacts in {cfg.outputs_path / 'artifacts'}")
    return result
