"""small_run: what a small pipeline and the everyday commands cost, where fixed costs outweigh rows.

In one run, each command in its own process as a user or a scheduler starts it:

1. ``dlpipe run --config conf/demo.yaml --set generate.rows=3000`` (all five stages) into a fresh data folder:
   seconds per stage (from the run's summary file) and in all;
2. the same run again (a retried schedule: every stage skipped);
3. ``dlpipe runs``, ``dlpipe models`` and ``dlpipe sql "SELECT 1"`` on that data folder;
4. (1) again on the demo's 100,000 rows (``--rows`` sets it), in a second data folder.

The baseline, measured in the same run, is the bare cost of a PySpark application here: a Python process that
starts a local Spark session and stops it (no Delta, no metastore). Every time is printed in seconds and as a
ratio to that baseline, since these machines vary by 2x from day to day.

Runs in scratch data folders under var/bench/ so it never touches the demo's tables.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DLPIPE = Path(sys.executable).parent / "dlpipe"
SMALL_ROWS = 3_000
DEFAULT_ROWS = 100_000  # the demo's
STAGES = ("generate", "featurize", "train", "infer", "evaluate")
BARE_SPARK = ("from pyspark.sql import SparkSession; "
              "SparkSession.builder.master('local[2]').config('spark.ui.enabled', 'false').getOrCreate().stop()")


def timed(command: list[str]) -> float:
    """Seconds of one command in its own process; its output is kept out of the benchmark's."""
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def settings(data_dir: Path, rows: int) -> list[str]:
    sets = [f"data_dir={data_dir}", f"generate.rows={rows}", "spark.conf={spark.ui.showConsoleProgress: false}"]
    return ["--config", "conf/demo.yaml", *[a for s in sets for a in ("--set", s)]]


def pipeline(rows: int, name: str) -> tuple[dict, float, Path]:
    """(seconds per stage, wall seconds, data folder) of one full ``dlpipe run`` into a fresh data folder."""
    data_dir = REPO / "var" / "bench" / f"small_run_{name}"
    shutil.rmtree(data_dir, ignore_errors=True)
    wall = timed([str(DLPIPE), "run", *settings(data_dir, rows), "--run-id", f"{name}-1"])
    summary = json.loads(sorted((data_dir / "runs" / f"{name}-1").glob("summary-*.json"))[-1].read_text())
    per_stage = {s["stage"]: round(s["seconds"], 1) for s in summary["stages"]}
    return per_stage, wall, data_dir


def launch(data_dir: Path) -> dict:
    """The model's record of its Horovod launch: seconds from the launch to rank 0's first step, step by step."""
    metadata = sorted((data_dir / "models" / "higgs_mlp").glob("v*/metadata.json"))[-1]
    return json.loads(metadata.read_text()).get("launch_seconds", {})


def main(rows: int) -> None:
    baseline = timed([sys.executable, "-c", BARE_SPARK])
    small, small_wall, small_dir = pipeline(SMALL_ROWS, "small")
    rerun = timed([str(DLPIPE), "run", *settings(small_dir, SMALL_ROWS), "--run-id", "small-2"])
    commands = {
        "runs": timed([str(DLPIPE), "runs", *settings(small_dir, SMALL_ROWS)]),
        "models": timed([str(DLPIPE), "models", *settings(small_dir, SMALL_ROWS)]),
        "sql_select_1": timed([str(DLPIPE), "sql", "SELECT 1", *settings(small_dir, SMALL_ROWS)]),
    }
    demo, demo_wall, _ = pipeline(rows, "demo")

    def ratio(seconds: float) -> float:
        return round(seconds / baseline, 2)

    four = sum(small[s] for s in STAGES[1:])
    print(json.dumps({
        "name": "small_run",
        "baseline": "a bare PySpark application (start a local session, stop it)",
        "baseline_seconds": round(baseline, 1),
        f"rows_{SMALL_ROWS}": {
            "seconds_per_stage": small, "four_stages_seconds": round(four, 1), "four_stages_ratio": ratio(four),
            "featurize_ratio": ratio(small["featurize"]), "wall_seconds": round(small_wall, 1),
            "wall_ratio": ratio(small_wall), "rerun_all_skipped_seconds": round(rerun, 1),
            "rerun_all_skipped_ratio": ratio(rerun), "train_launch_seconds": launch(small_dir),
        },
        "commands_seconds": {k: round(v, 1) for k, v in commands.items()},
        "commands_ratio": {k: ratio(v) for k, v in commands.items()},
        f"rows_{rows}": {
            "seconds_per_stage": demo, "four_stages_seconds": round(sum(demo[s] for s in STAGES[1:]), 1),
            "wall_seconds": round(demo_wall, 1), "wall_ratio": ratio(demo_wall),
        },
    }, indent=1), flush=True)
