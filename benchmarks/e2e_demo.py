"""e2e_demo: the demo pipeline end to end (generate, featurize, train, infer, evaluate), seconds per stage.

``peak_mem_mb`` is the peak resident memory of the whole process tree (driver, Spark JVM, Python workers, Horovod
ranks) during each stage, and during the whole run for the ``e2e_demo`` line.

Runs in a scratch data folder under var/bench/ so it never touches the demo's tables.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.measure import Measurement, PeakMemory, emit, timed

DEFAULT_ROWS = 1_000_000
REPO = Path(__file__).resolve().parents[1]


def main(rows: int) -> None:
    from pipelines import run
    from pipelines.config import load_config
    from pipelines.session import build_session

    data_dir = REPO / "var" / "bench" / "e2e_demo"
    shutil.rmtree(data_dir, ignore_errors=True)
    cfg = load_config(REPO / "conf" / "demo.yaml", [
        f"data_dir={data_dir}",
        f"generate.rows={rows}",
        f"generate.partitions={max(8, rows // 125_000)}",
    ])
    with PeakMemory() as whole:
        spark = build_session(cfg)
        try:
            total = 0.0
            for stage, call in run.stage_calls(spark, cfg, run_id="bench").items():
                with PeakMemory() as memory:
                    _, seconds = timed(call)
                total += seconds
                emit(Measurement(f"e2e_demo.{stage}", rows, seconds, memory.peak_mb))
        finally:
            spark.stop()
    emit(Measurement("e2e_demo", rows, total, whole.peak_mb))
