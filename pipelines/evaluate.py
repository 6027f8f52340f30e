"""Stage ``evaluate``: join a run's predictions to the input's labels and compute metrics in Spark.

Reads the predictions of one run (default: the latest) and the labelled input; appends one row to the Delta
table ``evaluate.metrics_table``. Only aggregates reach the driver.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.expressions import encoded_label
from features.spec import FeatureSpec
from features.split import assign_split
from pipelines.config import Config
from pipelines.errors import PipelineError
from pipelines.run_id import check_run_id
from pipelines.store import load_artifact
from pipelines.tables import read_source

EPSILON = 1e-7
LABEL = "__label"  # the encoded 0/1 label the metrics compare scores with


@dataclass(frozen=True)
class EvaluateResult:
    run_id: str
    split: str
    rows: int
    auc: float
    accuracy: float
    log_loss: float
    reference_auc: float | None
    table: str
    seconds: float


def auc(df: DataFrame, score: str, label: str) -> float:
    """Area under the ROC curve, computed by Spark (binned, distributed)."""
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=label, metricName="areaUnderROC")
    return float(evaluator.evaluate(df.select(F.col(score).cast("double"), F.col(label).cast("double"))))


def latest_run_id(spark: SparkSession, table: str) -> str:
    row = spark.table(table).groupBy("run_id").agg(F.max("scored_at").alias("t")).orderBy(F.desc("t")).first()
    if row is None:
        raise PipelineError(f"predictions table {table} has no runs: run `dlpipe infer` first")
    return row["run_id"]


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> EvaluateResult:
    started = time.time()
    ec, fc = cfg.evaluate, cfg.featurize
    predictions_table = cfg.qualified(cfg.infer.output_table)
    if not spark.catalog.tableExists(predictions_table):
        raise PipelineError(f"predictions table {predictions_table} does not exist: run `dlpipe infer` first")
    run_id = check_run_id(run_id) if run_id else latest_run_id(spark, predictions_table)
    predictions = spark.table(predictions_table).where(F.col("run_id") == run_id)
    first = predictions.select("model_name", "model_version", "feature_version").first()
    if first is None:
        raise PipelineError(f"predictions table {predictions_table} has no rows for run {run_id}")
    artifact = load_artifact(cfg, fc.output_table, first["feature_version"])
    split_cfg = artifact["split"]
    label_spec = FeatureSpec.from_json(artifact["spec"]).label
    key = split_cfg["key"]
    if key is None:
        raise PipelineError("evaluate joins predictions to labels by featurize.key: set featurize.key to an id column")

    raw = read_source(spark, cfg, cfg.infer.input)
    label_columns = [key, label_spec.column] + ([ec.reference_column] if ec.reference_column else [])
    missing = [c for c in label_columns if c not in raw.columns]
    if missing:
        raise PipelineError(f"evaluate needs column {missing[0]!r} in {cfg.infer.input.describe()}; it has no labels to compare with")
    labelled = assign_split(raw.select(*label_columns), key, split_cfg["train"], split_cfg["validation"], split_cfg["seed"])
    labelled = labelled.withColumn(
        LABEL, encoded_label(label_spec, raw.schema[label_spec.column].dataType).cast("double")
    ).where(F.col(LABEL).isNotNull())
    joined = (
        predictions.select(key, "score", "predicted_label")
        .join(labelled.where(F.col("split") == ec.split), key)
        .cache()
    )
    try:
        label = F.col(LABEL)
        p = F.least(F.greatest(F.col("score").cast("double"), F.lit(EPSILON)), F.lit(1 - EPSILON))
        stats = joined.agg(
            F.count(F.lit(1)).alias("rows"),
            F.avg((F.col("predicted_label") == label).cast("double")).alias("accuracy"),
            F.avg(-(label * F.log(p) + (1 - label) * F.log(1 - p))).alias("log_loss"),
        ).first()
        rows = int(stats["rows"])
        if rows == 0:
            raise PipelineError(f"run {run_id} has no predictions in the {ec.split} split to evaluate")
        model_auc = auc(joined, "score", LABEL)
        reference_auc = auc(joined, ec.reference_column, LABEL) if ec.reference_column else None
    finally:
        joined.unpersist()

    metrics_table = cfg.qualified(ec.metrics_table)
    row = [(run_id, first["model_name"], first["model_version"], ec.split, rows, model_auc,
            float(stats["accuracy"]), float(stats["log_loss"]), reference_auc,
            dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))]
    schema = ("run_id string, model_name string, model_version string, split string, rows long, auc double, "
              "accuracy double, log_loss double, reference_auc double, evaluated_at timestamp")
    spark.createDataFrame(row, schema).write.format("delta").mode("append").saveAsTable(metrics_table)
    result = EvaluateResult(run_id, ec.split, rows, model_auc, float(stats["accuracy"]), float(stats["log_loss"]),
                            reference_auc, metrics_table, time.time() - started)
    reference = f" (best achievable, from {ec.reference_column}: {reference_auc:.4f})" if reference_auc is not None else ""
    print(f"evaluate: run {run_id} on {rows:,} {ec.split} rows: AUC {model_auc:.4f}{reference}, "
          f"accuracy {result.accuracy:.4f}, log loss {result.log_loss:.4f} -> {metrics_table}")
    return result
