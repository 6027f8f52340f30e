"""e2e_demo: the demo pipeline end to end (generate, featurize, train, infer, evaluate), seconds per stage.

Runs in a scratch data folder under var/bench/ so it never touches the demo's tables.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.measure import Measurement, PeakMemory, emit

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
    with PeakMemory() as memory:
        spark = build_session(cfg)
        try:
            result = run.run(spark, cfg, run_id="bench")
        finally:
            spark.stop()
    for stage, seconds in result.seconds_per_stage.items():
        emit(Measurement(f"e2e_demo.{stage}", rows, seconds, memory.peak_mb))
    emit(Measurement("e2e_demo", rows, sum(result.seconds_per_stage.values()), memory.peak_mb))
