"""Stage ``train``: data-parallel Keras training with Horovod on Spark, streaming the feature table with Petastorm.

Reads the latest feature artifact and the current files of the feature table's training split; writes the next
model version under ``<data_dir>/models/<model_name>/`` (model.keras, history.json, metadata.json).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.schema import SPLIT_COLUMN, FeatureSchema
from models.mlp import MlpSettings
from models.trainer import MODEL_FILE, TrainSettings, pin_threads_env, train_on_rank
from pipelines.config import Config
from pipelines.errors import PipelineError
from pipelines.store import load_artifact, new_model_dir, save_model_metadata

STACK = ("pyspark", "delta-spark", "tensorflow-cpu", "horovod", "petastorm", "pyarrow", "numpy", "pandas")


@dataclass(frozen=True)
class TrainResult:
    model_name: str
    model_version: str
    model_path: str
    history: dict
    seconds: float


def library_versions() -> dict[str, str]:
    versions = {}
    for name in STACK:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def check_task_slots(spark: SparkSession, num_proc: int) -> None:
    """Horovod needs all ranks running at once: fail now, not after the start timeout, if slots are missing."""
    slots = spark.sparkContext.defaultParallelism
    if num_proc > slots:
        raise PipelineError(
            f"train.num_proc is {num_proc} but the Spark application has {slots} task slots: "
            f"lower train.num_proc or give Spark more cores"
        )


def run(spark: SparkSession, cfg: Config) -> TrainResult:
    started = time.time()
    tc = cfg.train
    table = cfg.qualified(cfg.featurize.output_table)
    artifact = load_artifact(cfg, cfg.featurize.output_table)
    schema = FeatureSchema.from_json(artifact["feature_schema"])
    if not spark.catalog.tableExists(table):
        raise PipelineError(f"feature table {table} does not exist: run `dlpipe featurize` first")
    check_task_slots(spark, tc.num_proc)

    # inputFiles() on the Delta table lists the files of its current version only, never stale ones.
    train_files = tuple(sorted(spark.table(table).where(F.col(SPLIT_COLUMN) == "train").inputFiles()))
    train_rows = int(artifact["rows_per_split"]["train"])
    steps = train_rows // (tc.num_proc * tc.batch_size)
    if steps < 1 or len(train_files) < tc.num_proc:
        raise PipelineError(
            f"training split of {table} has {train_rows} rows in {len(train_files)} files: need at least "
            f"num_proc x batch_size = {tc.num_proc * tc.batch_size} rows and {tc.num_proc} files; "
            "lower train.batch_size or train.num_proc, or featurize more data"
        )
    version, out_dir = new_model_dir(cfg, tc.model_name)
    threads = max(1, spark.sparkContext.defaultParallelism // tc.num_proc)
    settings = TrainSettings(
        train_files=train_files,
        schema=schema,
        model=MlpSettings(tc.hidden_units, tc.activation, tc.dropout, tc.embedding_dim, tc.seed),
        epochs=tc.epochs,
        batch_size=tc.batch_size,
        learning_rate=tc.learning_rate,
        steps_per_epoch=steps,
        threads_per_rank=threads,
        output_dir=str(out_dir),
    )
    print(f"train: {tc.model_name} {version} on {tc.num_proc} Horovod workers, {steps} steps/epoch x {tc.epochs} epochs")
    results = _launch(settings, tc.num_proc, tc.start_timeout_s)
    history = results[0]["history"]
    save_model_metadata(out_dir, {
        "model_name": tc.model_name,
        "model_version": version,
        "model_file": MODEL_FILE,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train_config": dataclasses.asdict(tc),
        "feature_artifact": {"table": cfg.featurize.output_table, "version": artifact["version"]},
        "feature_table": {"name": table, "delta_version": artifact["feature_table"]["delta_version"]},
        "feature_schema": schema.to_json(),
        "train_rows": train_rows,
        "history": history,
        "seconds_per_rank": [r["seconds"] for r in results],
        "libraries": library_versions(),
        "git_commit": git_commit(),
    })
    result = TrainResult(tc.model_name, version, str(out_dir), history, time.time() - started)
    final = {k: round(v[-1], 4) for k, v in history.items()}
    print(f"train: saved {tc.model_name} {version} to {out_dir} in {result.seconds:.1f}s; last epoch {final}")
    return result


def _launch(settings: TrainSettings, num_proc: int, start_timeout_s: int) -> list[dict]:
    import horovod.spark

    try:
        return horovod.spark.run(
            train_on_rank,
            args=(settings,),
            num_proc=num_proc,
            start_timeout=start_timeout_s,
            use_gloo=True,
            env=pin_threads_env(settings.threads_per_rank),
            verbose=0,
        )
    except Exception as err:  # Horovod wraps rank failures in several exception types
        raise PipelineError(f"distributed training failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
