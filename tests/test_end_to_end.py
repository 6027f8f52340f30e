"""The demo pipeline end to end on tiny data, as a user runs it: `dlpipe run` in its own process, then the tables
seen by name from other processes (`dlpipe sql`, `spark-sql`) and a stage under `spark-submit`."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS = 8000

pytestmark = pytest.mark.slow


def settings(data_dir: Path) -> list[str]:
    return ["--config", "conf/demo.yaml", "--set", f"data_dir={data_dir}", "--set", f"generate.rows={ROWS}",
            "--set", "generate.partitions=2", "--set", "train.epochs=4", "--set", "train.batch_size=128"]


def run(command: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"{command} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("e2e") / "var"
    out = run([str(BIN / "dlpipe"), "run", *settings(data_dir), "--run-id", "e2e-1"])
    return data_dir, out.stdout


def test_run_prints_auc_sql_rows_and_locations(pipeline_run):
    data_dir, stdout = pipeline_run
    assert "evaluate: run e2e-1 on" in stdout and "AUC" in stdout
    assert "| predicted_label | rows" in stdout
    assert f"outputs under {data_dir}" in stdout


def test_predictions_table(spark, pipeline_run):
    data_dir, _ = pipeline_run
    predictions = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "predictions"))
    assert predictions.dtypes == [
        ("row_id", "bigint"), ("score", "float"), ("predicted_label", "int"), ("model_name", "string"),
        ("model_version", "string"), ("feature_version", "string"), ("input_version", "bigint"),
        ("run_id", "string"), ("scored_at", "timestamp"), ("run_date", "date"),
    ]
    assert predictions.count() == ROWS
    assert predictions.select("row_id").distinct().count() == ROWS
    row = predictions.agg(F.min("score"), F.max("score"), F.countDistinct("run_id"), F.first("model_name")).first()
    assert 0.0 <= row[0] < row[1] <= 1.0 and row[2] == 1 and row[3] == "higgs_mlp"


def test_auc_beats_chance_clearly(spark, pipeline_run):
    data_dir, _ = pipeline_run
    metrics = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "metrics")).first()
    assert metrics["split"] == "validation" and 600 < metrics["rows"] < 1000
    assert metrics["auc"] > 0.65, metrics
    assert metrics["reference_auc"] > metrics["auc"] - 0.02  # nothing beats the true probability by much
    cells = [metrics[c] for c in ("true_positives", "false_positives", "true_negatives", "false_negatives")]
    assert sum(cells) == metrics["rows"] and metrics["weight_column"] is None
    assert metrics["accuracy"] == pytest.approx((cells[0] + cells[2]) / metrics["rows"])
    for plot in ("roc", "scores", "calibration"):  # PNG files, as the metrics row says
        assert (Path(metrics["plots"]) / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_and_artifact_written(pipeline_run):
    data_dir, _ = pipeline_run
    assert (data_dir / "models" / "higgs_mlp" / "v1" / "model.keras").is_file()
    assert (data_dir / "models" / "higgs_mlp" / "v1" / "metadata.json").is_file()
    assert (data_dir / "artifacts" / "features" / "v1.json").is_file()


def test_dlpipe_sql_sees_table_by_name(pipeline_run):
    data_dir, _ = pipeline_run
    out = run([str(BIN / "dlpipe"), "sql", "SELECT count(*) AS n FROM predictions WHERE run_id = 'e2e-1'",
               "--set", f"data_dir={data_dir}"])
    assert f"| {ROWS}" in out.stdout


def test_spark_sql_from_another_process(pipeline_run):
    data_dir, _ = pipeline_run
    out = run([str(BIN / "spark-sql"), "-e", "SELECT count(*) FROM dlpipe.predictions"],
              env={"SPARK_CONF_DIR": str(data_dir / "conf"), "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert out.stdout.strip().splitlines()[-1] == str(ROWS)


def test_stage_under_spark_submit(spark, pipeline_run):
    data_dir, _ = pipeline_run
    run([str(BIN / "spark-submit"), "jobs/evaluate.py", *settings(data_dir), "--run-id", "e2e-1"],
        env={"PATH": f"{BIN}:{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable})
    metrics = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "metrics"))
    assert metrics.where(F.col("run_id") == "e2e-1").count() == 2


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_beeline_queries_the_thrift_server(pipeline_run):
    data_dir, _ = pipeline_run
    port = free_port()
    server = subprocess.Popen([str(BIN / "dlpipe"), "serve-sql", "--set", f"data_dir={data_dir}", "--port", str(port)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        log = []
        for line in server.stdout:  # the server says when it listens
            log.append(line)
            if "listening on" in line:
                break
        assert server.poll() is None, "".join(log[-50:])
        beeline = run([str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/dlpipe", "--outputformat=csv2",
                       "-e", "SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM predictions"],
                      env={"PATH": f"{BIN}:{os.environ['PATH']}"}, timeout=300)
        lines = beeline.stdout.strip().splitlines()  # the header follows beeline's prompt on its line
        assert lines[-2].endswith("n,runs") and lines[-1] == f"{ROWS},1", beeline.stdout
        server.terminate()  # SIGTERM: the server stops and the process exits cleanly
        assert server.wait(timeout=120) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
            server.wait()
