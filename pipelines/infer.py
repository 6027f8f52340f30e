"""Stage ``infer``: featurize the input with the model's artifact and score it with an Arrow batch UDF into Delta.

Reads ``infer.input`` and the latest model of ``train.model_name`` (with the feature artifact it was trained on);
writes the run's rows to the Delta table ``infer.output_table``, partitioned by ``run_date``. Re-running a run id
replaces exactly that run's rows.
"""
from __future__ import annotations

import datetime as dt
import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.ml.functions import predict_batch_udf
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.schema import NUMERIC_INPUT, FeatureSchema
from features.transform import FittedFeatures, apply_features
from pipelines.config import Config
from pipelines.run_id import check_run_id, new_run_id
from pipelines.store import load_artifact, load_model_metadata
from pipelines.tables import last_commit, read_source, table_version

@dataclass(frozen=True)
class InferResult:
    table: str
    table_version: int
    run_id: str
    rows: int
    seconds: float


def make_scorer(model_path: str, schema: FeatureSchema, batch_size: int):
    """A ``predict_batch_udf`` over (numeric array column, index columns...) that loads the model once per worker."""

    n_columns = (1 if schema.numeric else 0) + len(schema.index_columns)

    def make_predict_fn():
        import tensorflow as tf

        model = tf.keras.models.load_model(model_path, compile=False)

        def predict(*columns: np.ndarray) -> np.ndarray:
            inputs = {NUMERIC_INPUT: columns[0].astype(np.float32)} if schema.numeric else {}
            indices = columns[1:] if schema.numeric else columns
            inputs.update({name: idx.astype(np.int32) for name, idx in zip(schema.index_columns, indices)})
            return model.predict_on_batch(inputs)[:, 0]

        # predict_batch_udf counts the function's parameters to know how many input columns it takes.
        predict.__signature__ = inspect.Signature(
            [inspect.Parameter(f"column_{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(n_columns)]
        )
        return predict

    shapes = {0: [len(schema.numeric)]} if schema.numeric else None  # index columns are scalars
    return predict_batch_udf(make_predict_fn, return_type=T.FloatType(), batch_size=batch_size, input_tensor_shapes=shapes)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> InferResult:
    started = time.time()
    ic = cfg.infer
    run_id = check_run_id(run_id or new_run_id())
    model_meta, model_dir = load_model_metadata(cfg, cfg.train.model_name)
    artifact_ref = model_meta["feature_artifact"]
    artifact = load_artifact(cfg, artifact_ref["table"], artifact_ref["version"])
    fitted = FittedFeatures.from_json(artifact)
    schema = fitted.schema

    raw = read_source(spark, cfg, ic.input)
    features = apply_features(raw, fitted)
    scorer = make_scorer(str(Path(model_dir) / model_meta["model_file"]), schema, ic.batch_size)
    score_inputs = ([F.array(*[F.col(c) for c in schema.numeric])] if schema.numeric else []) + [
        F.col(c) for c in schema.index_columns
    ]
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    predictions = features.select(
        *[F.col(c) for c in schema.passthrough],
        scorer(*score_inputs).alias("score"),
    ).select(
        "*",
        (F.col("score") >= F.lit(ic.threshold)).cast("int").alias("predicted_label"),
        F.lit(model_meta["model_name"]).alias("model_name"),
        F.lit(model_meta["model_version"]).alias("model_version"),
        F.lit(artifact["version"]).alias("feature_version"),
        F.lit(table_version(spark, cfg, ic.input)).cast("long").alias("input_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(scored_at.date()).alias("run_date"),
    )
    table = cfg.qualified(ic.output_table)
    writer = predictions.write.format("delta").partitionBy("run_date")
    if spark.catalog.tableExists(table):
        # Replace exactly this run's rows, atomically, in one Delta commit.
        writer.mode("overwrite").option("replaceWhere", f"run_id = '{run_id}'").saveAsTable(table)
    else:
        writer.mode("append").saveAsTable(table)
    # The commit's own metrics say how many rows it wrote: no second scan of the table.
    version, metrics = last_commit(spark, table)
    rows = int(metrics["numOutputRows"])
    result = InferResult(table, version, run_id, rows, time.time() - started)
    print(f"infer: scored {rows:,} rows with {model_meta['model_name']} {model_meta['model_version']} "
          f"into {table} (run {run_id}, Delta version {version}) in {result.seconds:.1f}s")
    return result
