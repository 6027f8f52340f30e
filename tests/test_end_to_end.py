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
