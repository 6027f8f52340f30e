"""pipeline_e2e: the scheduled pipeline on generated rows, as a scheduler runs it, and what orchestration costs.

Generates ``--rows`` rows (``dlpipe generate``, outside the measurement), then times, each in its own process as a
scheduler starts them:

1. ``dlpipe run --stages featurize,train,infer,evaluate`` for one date: wall time per stage (planning and
   recording included) and of the stage's own work, from the run's summary file; the run writes its HTML report;
2. the same ``dlpipe run`` again for the same date (a retried schedule: every stage skipped);
3. ``dlpipe report`` of the first run in its own process (the command a user runs later; not in the share);
4. the four stages alone, as a user's own script would call them: one process that starts Spark with the same
   settings and calls ``featurize.run``, ``train.run``, ``infer.run`` and ``evaluate.run`` in order, with no runs
   table, plans, skip checks, summary or report (``stages_alone_seconds``).

``overhead_share`` is the share of (1) spent outside the four stages' own work: starting the process, the driver
and Spark, reading and writing the runs table, planning and skip checks, the summary and the report.
``orchestration_share`` leaves out what any Spark application pays, measured in the same run as the baseline: a
``dlpipe sql "SELECT 1"`` process (start the driver and Spark with the same settings, one query, stop).
``added_share`` is what ``dlpipe run`` costs beyond (4), over the time of (1): it charges the orchestration only
what it adds, where ``overhead_share`` also charges it Spark's start and the first use of the JVM's Delta and Hive
code, which (4) pays inside its stages. One run of each at 10M rows: the stages' own noise (train +-5 s) is of
the same size as the difference. Peak resident
memory is sampled over the whole process tree of (1), per role: the driver's Python, the JVM (driver and, in local
mode, executors) and the Python workers with the Horovod ranks.

Runs in a scratch data folder under var/bench/ so it never touches the demo's tables.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.measure import PeakMemory

DEFAULT_ROWS = 10_000_000
REPO = Path(__file__).resolve().parents[1]
DLPIPE = Path(sys.executable).parent / "dlpipe"
FOUR = ("featurize", "train", "infer", "evaluate")
DATE = dt.date(2026, 11, 26)


def role(proc: psutil.Process, root: psutil.Process) -> str | None:
    """Which part of a local dlpipe run a process of this benchmark's tree is (the benchmark itself: none)."""
    if proc.pid == root.pid:
        return None
    command = proc.cmdline()
    if command and "java" in command[0]:
        return "jvm"
    if proc.ppid() == root.pid:
        return "driver_python"
    return "python_workers"


def dlpipe(args: list[str], settings: list[str]) -> float:
    """Seconds of one ``dlpipe`` command in its own process; its output goes to this console."""
    started = time.perf_counter()
    subprocess.run([str(DLPIPE), *args, *settings], cwd=REPO, check=True)
    return time.perf_counter() - started


def stages_alone(settings: list[str]) -> float:
    """Seconds of (4): the four stages called in order in one Spark application, in their own process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.pipeline_e2e", *settings], cwd=REPO, check=True)
    return time.perf_counter() - started


def _stages_alone_main(argv: list[str]) -> None:
    from dlpipe.pipelines import evaluate, featurize, infer, train
    from dlpipe.pipelines.config import load_config
    from dlpipe.pipelines.session import build_session

    cfg = load_config(argv[argv.index("--config") + 1], [argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
    spark = build_session(cfg)
    try:
        featurize.run(spark, cfg)
        train.run(spark, cfg, run_id="bench-alone")
        infer.run(spark, cfg, run_id="bench-alone", run_date=DATE)
        evaluate.run(spark, cfg, run_id="bench-alone")
    finally:
        spark.stop()


def main(rows: int) -> None:
    data_dir = REPO / "var" / "bench" / "pipeline_e2e"
    shutil.rmtree(data_dir, ignore_errors=True)
    sets = [f"data_dir={data_dir}", f"generate.rows={rows}", f"generate.partitions={max(8, rows // 125_000)}",
            "spark.conf={spark.ui.showConsoleProgress: false}"]
    settings = ["--config", "conf/demo.yaml", *[a for s in sets for a in ("--set", s)]]
    stages = ["--stages", ",".join(FOUR), "--date", str(DATE)]

    generate_s = dlpipe(["generate"], settings)
    empty_app_s = dlpipe(["sql", "SELECT 1"], settings)
    with PeakMemory(role=role) as memory:
        run_s = dlpipe(["run", *stages, "--run-id", "bench-1"], settings)
    rerun_s = dlpipe(["run", *stages, "--run-id", "bench-2"], settings)
    report_command_s = dlpipe(["report", "bench-1"], settings)
    alone_s = stages_alone(settings)

    summary = json.loads(sorted((data_dir / "runs" / "bench-1").glob("summary-*.json"))[-1].read_text())
    per_stage = {s["stage"]: s for s in summary["stages"]}
    work = sum(per_stage[s]["work_seconds"] for s in FOUR)
    report_s = summary["report_seconds"]
    around = run_s - sum(per_stage[s]["seconds"] for s in FOUR) - report_s  # process and Spark start, summaries
    tracking = sum(per_stage[s]["seconds"] - per_stage[s]["work_seconds"] for s in FOUR)  # plans, skip checks, rows
    print(json.dumps({
        "name": "pipeline_e2e",
        "rows": rows,
        "seconds": round(run_s, 1),
        "rows_per_s": round(rows / run_s, 1),
        "seconds_per_stage": {s: round(per_stage[s]["seconds"], 1) for s in FOUR},
        "work_seconds_per_stage": {s: round(per_stage[s]["work_seconds"], 1) for s in FOUR},
        "overhead_seconds": {"process_and_session": round(around, 1), "planning_and_tracking": round(tracking, 1),
                             "report": round(report_s, 1)},
        "overhead_share": round((run_s - work) / run_s, 4),
        "baseline": "an empty Spark application (dlpipe sql \"SELECT 1\")",
        "baseline_seconds": round(empty_app_s, 1),
        "orchestration_share": round((run_s - work - empty_app_s) / run_s, 4),
        "stages_alone_seconds": round(alone_s, 1),
        "added_share": round((run_s - alone_s) / run_s, 4),
        "report_command_seconds": round(report_command_s, 1),
        "rerun_all_skipped_seconds": round(rerun_s, 1),
        "generate_seconds_not_counted": round(generate_s, 1),
        "peak_mem_mb": round(memory.peak_mb, 1),
        "peak_mem_mb_by_role": {k: round(v, 1) for k, v in sorted(memory.peak_by_role.items())},
    }), flush=True)


if __name__ == "__main__":  # (4), started by stages_alone()
    _stages_alone_main(sys.argv[1:])
