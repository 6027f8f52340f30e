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
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.apply import apply_features
from features.fitted import FittedFeatures
from features.schema import DENSE_INPUT, FeatureSchema
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


def dense_vector(schema: FeatureSchema) -> Column:
    """Every dense feature of a featurized row in one float array, in the model's order."""
    parts = [F.col(c.name) if c.shape else F.array(F.col(c.name)) for c in schema.dense]
    return parts[0] if len(parts) == 1 else F.concat(*parts)


def make_scorer(model_path: str, schema: FeatureSchema, batch_size: int):
    """A ``predict_batch_udf`` over (dense array column, index columns...) that loads the model once per worker."""

    index_names = [c.name for c in schema.index]
    n_columns = (1 if schema.dense else 0) + len(index_names)

    def make_predict_fn():
        import tensorflow as tf

        model = tf.keras.models.load_model(model_path, compile=False)

        def predict(*columns: np.ndarray) -> np.ndarray:
            inputs = {DENSE_INPUT: columns[0].astype(np.float32)} if schema.dense else {}
            indices = columns[1:] if schema.dense else columns
            inputs.update({name: idx.astype(np.int32) for name, idx in zip(index_names, indices)})
            return model.predict_on_batch(inputs)[:, 0]

        # predict_batch_udf counts the function's parameters to know how many input columns it takes.
        predict.__signature__ = inspect.Signature(
            [inspect.Parameter(f"column_{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(n_columns)]
        )
        return predict

    shapes = {0: [schema.dense_width]} if schema.dense else None  # index columns are scalars
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
    features = apply_features(raw, fitted, source=ic.input.describe(),
                              artifact=f"feature artifact {artifact_ref['table']}/{artifact['version']}")
    scorer = make_scorer(str(Path(model_dir) / model_meta["model_file"]), schema, ic.batch_size)
    score_inputs = ([dense_vector(schema)] if schema.dense else []) + [F.col(c.name) for c in schema.index]
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
