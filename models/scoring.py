"""Scoring Arrow record batches with a saved Keras model, inside Spark's Python workers.

``score_batches`` is the function Spark's ``mapInArrow`` runs: featurized rows arrive as Arrow record batches,
their features become the model's NumPy inputs without a copy per row (the dense features come packed in one list
column, whose values are one flat buffer, reshaped), the model scores the whole batch in one call, and the
passthrough columns go back out untouched beside the score. The model is loaded once per Python worker process
and kept for the next tasks (Spark reuses its Python workers), with TensorFlow limited to the task's CPUs
(``spark.task.cpus``) so that parallel tasks do not fight over cores. Two costs Spark's worker adds to every task
are taken out (``models.spark_worker``): rereading the archives on its path, and a garbage collection that walks
TensorFlow's objects.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from dlpipe.features.schema import DENSE_INPUT, FeatureSchema
from dlpipe.models.spark_worker import freeze_loaded_objects, keep_archive_indexes

SCORE = "score"
_LOADED: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {}


def arrow_batch_inputs(batch: pa.RecordBatch, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """The model's inputs for the rows of ``batch``: its ``dense`` column (every dense feature of a row in one float
    list, in schema order: see ``pipelines.infer.score_features``) as one float32 matrix, and one int32 vector per
    index column. The list column has no nulls, so its flat values buffer holds the rows one after the other: the
    matrix is that buffer, reshaped, not a copy per row."""
    inputs: dict[str, np.ndarray] = {}
    if schema.dense:
        flat = batch.column(DENSE_INPUT).flatten().to_numpy(zero_copy_only=False)
        inputs[DENSE_INPUT] = flat.reshape(batch.num_rows, schema.dense_width).astype(np.float32, copy=False)
    for column in schema.index:
        inputs[column.name] = batch.column(column.name).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return inputs


def load_predictor(model_path: str, schema: FeatureSchema, threads: int | None = None
                   ) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A function from model inputs to scores (float32, one per row) for the Keras model at ``model_path``, loaded
    once per process. ``threads`` caps TensorFlow's thread pools; it takes effect in a process that has not run
    TensorFlow yet."""
    if model_path in _LOADED:
        return _LOADED[model_path]
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already runs in this process: its pools are fixed
    model = tf.keras.models.load_model(model_path, compile=False)
    signature = {}
    if schema.dense:
        signature[DENSE_INPUT] = tf.TensorSpec([None, schema.dense_width], tf.float32, name=DENSE_INPUT)
    for column in schema.index:
        signature[column.name] = tf.TensorSpec([None], tf.int32, name=column.name)

    # One graph for every batch size: a fixed signature with an open batch dimension, traced once.
    @tf.function(input_signature=[signature])
    def forward(inputs):
        return model(inputs, training=False)[:, 0]

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return forward(inputs).numpy()

    forward.get_concrete_function()  # traced now, so that the graph is frozen with the model
    freeze_loaded_objects()
    _LOADED[model_path] = predict
    return predict


def make_batch_scorer(model_path: str, schema: FeatureSchema, keep: tuple[str, ...]
                      ) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: record batches of featurized rows in, batches of the ``keep`` columns and the
    float32 ``score`` out, row for row."""

    def score_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        keep_archive_indexes()
        context = TaskContext.get()
        predict = load_predictor(model_path, schema, threads=context.cpus() if context else None)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            scores = predict(arrow_batch_inputs(batch, schema))
            yield pa.RecordBatch.from_arrays(
                [batch.column(name) for name in keep] + [pa.array(scores, type=pa.float32())],
                names=[*keep, SCORE],
            )

    return score_batches
