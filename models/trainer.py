"""The data-parallel trainer that runs on every Horovod rank (one Spark task each).

``train_on_rank(settings)`` is what ``horovod.spark.run`` ships to the executors: it reads this rank's shard of the
training files with Petastorm into ``tf.data``, trains the model from ``models.mlp`` with Horovod's distributed
optimizer, and on rank 0 saves the model. Everything it needs is in one frozen, picklable :class:`TrainSettings`.

Ranks must run the same number of steps per epoch or Horovod's allreduce hangs (Horovod #708), so the driver
computes ``steps_per_epoch`` from the row count and every rank runs exactly that many, reading its shard as an
endless stream of row groups (Petastorm's single-threaded ``dummy`` pool: its thread pool lost rows here, see
STACK.md).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from features.schema import FeatureSchema
from models.mlp import MlpSettings

MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class TrainSettings:
    train_files: tuple[str, ...]
    schema: FeatureSchema
    model: MlpSettings
    epochs: int
    batch_size: int
    learning_rate: float
    steps_per_epoch: int
    threads_per_rank: int
    output_dir: str


def make_dataset(settings: TrainSettings, rank: int, size: int):
    """(reader, dataset): this rank's shard as an endless ``tf.data`` stream of (inputs, label) batches."""
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    from models.mlp import model_inputs

    schema = settings.schema
    reader = make_batch_reader(
        list(settings.train_files),
        schema_fields=[*schema.feature_columns, schema.label],
        cur_shard=rank,
        shard_count=size,
        num_epochs=None,
        shuffle_row_groups=False,
        reader_pool_type="dummy",
    )

    def to_inputs(batch):
        columns = batch._asdict()
        label = tf.cast(columns[schema.label], tf.float32)
        return model_inputs(schema, columns), label

    dataset = make_petastorm_dataset(reader).map(to_inputs).rebatch(settings.batch_size, drop_remainder=True)
    return reader, dataset.prefetch(2)


def train_on_rank(settings: TrainSettings) -> dict:
    """Train on this Horovod rank; rank 0 saves the model and returns the per-epoch history."""
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from models.mlp import build_model

    tf.config.threading.set_intra_op_parallelism_threads(settings.threads_per_rank)
    tf.config.threading.set_inter_op_parallelism_threads(settings.threads_per_rank)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()

    model = build_model(settings.schema, settings.model)
    # Linear scaling of the learning rate with the number of ranks (Goyal et al. 2017).
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.legacy.Adam(settings.learning_rate * size))
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),
        hvd.callbacks.MetricAverageCallback(),
        tf.keras.callbacks.TerminateOnNaN(),
    ]
    reader, dataset = make_dataset(settings, rank, size)
    started = time.time()
    try:
        history = model.fit(
            dataset,
            epochs=settings.epochs,
            steps_per_epoch=settings.steps_per_epoch,
            callbacks=callbacks,
            verbose=2 if rank == 0 else 0,
        )
    finally:
        reader.stop()
        reader.join()
    seconds = time.time() - started
    result = {
        "rank": rank,
        "size": size,
        "seconds": seconds,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    if rank == 0:
        out = Path(settings.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / MODEL_FILE)
        (out / "history.json").write_text(json.dumps(result, indent=2))
    return result


def pin_threads_env(threads: int) -> dict[str, str]:
    """Environment for the Horovod tasks: keep each rank's thread pools to its share of the cores."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # Petastorm 0.13.1 warns about legacy pyarrow APIs on every file it opens; the pinned pyarrow 14 keeps them.
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    return env
