"""The data-parallel trainer that runs on every Horovod rank (one Spark task each).

``train_on_rank(settings)`` is what ``horovod.spark.run`` ships to the executors. Everything it needs is in one
frozen, picklable :class:`TrainSettings`. Per rank it:

- reads its files of each epoch's plan (``models.epochs``: every training row exactly once per epoch across ranks,
  the same number of steps on every rank) through Petastorm (``models.reader``) into ``tf.data``;
- trains the model of ``models.networks`` with ``hvd.DistributedOptimizer`` (learning rate scaled by the number of
  ranks after a warm-up), broadcasting rank 0's initial state and averaging the training metrics;
- after each epoch evaluates its share of the validation files and sums the metric accumulators (loss sums, AUC
  confusion counts) across ranks, so every rank holds the same exact validation metrics and early stopping decides
  the same everywhere;
- checks for a NaN loss collectively every ``nan_check_every`` steps, so all ranks stop at the same step;
- on rank 0, writes a checkpoint (model and optimizer state) and ``state.json`` to the run folder after each
  finished epoch, and the final model at the end.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from features.schema import FeatureSchema
from models.epochs import DataFile, plan_epoch
from models.networks import NetworkSettings
from models.reader import ReadSettings, rank_batches

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
ATTEMPT_FILE = "attempt"  # the id of the launch that owns the run folder; older launches' ranks stop writing
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class TrainSettings:
    train_files: tuple[DataFile, ...]
    validation_files: tuple[DataFile, ...]
    schema: FeatureSchema
    network: NetworkSettings
    epochs: int
    batch_size: int
    steps_per_epoch: int
    learning_rate: float
    run_dir: str
    config_hash: str
    attempt: str = ""
    optimizer: str = "adam"
    momentum: float = 0.9
    loss: str = "bce"
    warmup_epochs: int = 1
    weight_column: str | None = None
    early_stopping: dict | None = None  # {"monitor", "mode", "patience", "min_delta"}
    initial_epoch: int = 0
    history: dict = field(default_factory=dict)  # of the epochs finished before a resume
    threads_per_rank: int = 1
    use_gpu: bool = False
    seed: int = 1
    nan_check_every: int = 20
    record_column: str | None = None  # tests: record the rows each rank trains on
    record_dir: str | None = None

    def read_settings(self, record: bool = False) -> ReadSettings:
        return ReadSettings(self.schema, self.batch_size, self.seed, self.weight_column,
                            self.record_column if record else None, self.record_dir if record else None)


def checkpoint_prefix(run_dir: str | Path, epochs_done: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"epoch-{epochs_done:04d}"


def read_state(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_attempt(settings: "TrainSettings") -> None:
    """Fail if a newer launch of this run took over its folder: ranks of a killed driver can outlive it and must
    not overwrite the checkpoints of the launch that resumed the run."""
    owner = (Path(settings.run_dir) / ATTEMPT_FILE).read_text().strip()
    if owner != settings.attempt:
        raise RuntimeError(f"run folder {settings.run_dir} now belongs to launch {owner}, not {settings.attempt}: "
                           "this stale worker stops")


def write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def training_dataset(settings: TrainSettings, rank: int, size: int):
    """``tf.data`` of this rank's batches for epochs ``initial_epoch`` .. ``epochs - 1``, ``steps_per_epoch`` each."""
    import tensorflow as tf

    def batches():
        for epoch in range(settings.initial_epoch, settings.epochs):
            plan = plan_epoch(settings.train_files, size, settings.batch_size, epoch, settings.seed)[rank]
            yield from rank_batches([f.path for f in plan.files], settings.steps_per_epoch,
                                    settings.read_settings(record=True), epoch, rank)

    return tf.data.Dataset.from_generator(batches, output_signature=_signature(settings.schema)).prefetch(2)


def _signature(schema: FeatureSchema):
    import tensorflow as tf

    from features.schema import DENSE_INPUT

    inputs = {}
    if schema.dense:
        inputs[DENSE_INPUT] = tf.TensorSpec((None, schema.dense_width), tf.float32)
    for column in schema.index:
        inputs[column.name] = tf.TensorSpec((None,), tf.int32)
    return inputs, tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.float32)


def _callbacks(settings: TrainSettings, model, rank: int, size: int, outcome: dict) -> list:
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from models.networks import loss_for

    loss_fn = tf.keras.losses.get(loss_for(settings.network, settings.loss))

    class NanGuard(tf.keras.callbacks.Callback):
        """Stop every rank at the same step once any rank's loss is NaN or infinite."""

        def _check(self, logs) -> bool:
            bad = 0.0 if math.isfinite(float(logs.get("loss", 0.0))) else 1.0
            if float(hvd.allreduce(tf.constant(bad), op=hvd.Sum, name="nan_guard")) > 0:
                self.model.stop_training = True
                return True
            return False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % settings.nan_check_every == 0 and outcome.get("nan_epoch") is None and self._check(logs or {}):
                outcome["nan_epoch"] = self.epoch

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is None and self._check(logs or {}):
                outcome["nan_epoch"] = epoch

    class ShardedValidation(tf.keras.callbacks.Callback):
        """Exact validation metrics from every rank's share of the validation files."""

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is not None or not settings.validation_files:
                return
            plan = plan_epoch(settings.validation_files, size, settings.batch_size, 0, settings.seed, require_all=False)
            metrics = {
                "val_loss": tf.keras.metrics.Mean(),
                "val_auc": tf.keras.metrics.AUC(num_thresholds=1000),
                "val_accuracy": tf.keras.metrics.BinaryAccuracy(),
            }
            for inputs, label, weight in rank_batches([f.path for f in plan[rank].files], None,
                                                      settings.read_settings(), 0, rank):
                score = self.model(inputs, training=False)
                metrics["val_loss"].update_state(loss_fn(label[:, None], score), sample_weight=weight)
                metrics["val_auc"].update_state(label, score[:, 0], sample_weight=weight)
                metrics["val_accuracy"].update_state(label[:, None], score, sample_weight=weight)
            for name, metric in metrics.items():
                for i, variable in enumerate(metric.variables):
                    variable.assign(hvd.allreduce(variable.read_value(), op=hvd.Sum, name=f"{name}.{i}"))
                logs[name] = float(metric.result())

    class EpochCheckpoint(tf.keras.callbacks.Callback):
        """Rank 0: model and optimizer state after each finished epoch, then state.json pointing at it."""

        def __init__(self):
            super().__init__()
            self.history = {k: list(v) for k, v in settings.history.items()}
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is not None:
                return
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            outcome["history"] = self.history
            if rank != 0:
                return
            check_attempt(settings)
            prefix = checkpoint_prefix(settings.run_dir, epoch + 1)
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(str(prefix))
            write_json_atomically(Path(settings.run_dir) / STATE_FILE, {
                "config_hash": settings.config_hash, "epochs_done": epoch + 1, "checkpoint": prefix.name,
                "history": self.history, "finished": False,
            })
            for old in sorted(prefix.parent.glob("epoch-*.index"))[:-KEEP_CHECKPOINTS]:
                for part in prefix.parent.glob(old.name.removesuffix(".index") + ".*"):
                    part.unlink()
            done = epoch + 1 - settings.initial_epoch
            left = (time.time() - self.started) / done * (settings.epochs - epoch - 1)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            print(f"train: epoch {epoch + 1}/{settings.epochs}: {summary}; about {left:.0f}s left", flush=True)

    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),
        hvd.callbacks.MetricAverageCallback(),
    ]
    if settings.warmup_epochs > 0:
        callbacks.append(hvd.callbacks.LearningRateWarmupCallback(
            initial_lr=settings.learning_rate * size, warmup_epochs=settings.warmup_epochs,
            steps_per_epoch=settings.steps_per_epoch, verbose=0))
    callbacks += [NanGuard(), ShardedValidation(), EpochCheckpoint()]
    if settings.early_stopping:
        es = settings.early_stopping
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor=es["monitor"], mode=es["mode"], patience=es["patience"], min_delta=es["min_delta"]))
    return callbacks


def _optimizer(settings: TrainSettings, size: int):
    import tensorflow as tf

    rate = settings.learning_rate * size  # linear scaling with the number of ranks (Goyal et al. 2017)
    if settings.optimizer == "sgd":
        return tf.keras.optimizers.legacy.SGD(rate, momentum=settings.momentum)
    return tf.keras.optimizers.legacy.Adam(rate)


def train_on_rank(settings: TrainSettings) -> dict:
    """Train on this Horovod rank. Returns the rank's outcome: history, seconds, epochs done, NaN epoch if any."""
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from models.networks import build_model, loss_for

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    if settings.use_gpu:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
            tf.config.experimental.set_memory_growth(gpus[hvd.local_rank() % len(gpus)], True)
    tf.config.threading.set_intra_op_parallelism_threads(settings.threads_per_rank)
    tf.config.threading.set_inter_op_parallelism_threads(settings.threads_per_rank)

    model = build_model(settings.schema, settings.network)
    optimizer = hvd.DistributedOptimizer(_optimizer(settings, size))
    model.compile(
        optimizer=optimizer,
        loss=loss_for(settings.network, settings.loss),
        weighted_metrics=[tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    if settings.initial_epoch > 0:
        prefix = checkpoint_prefix(settings.run_dir, settings.initial_epoch)
        tf.train.Checkpoint(model=model, optimizer=optimizer).read(str(prefix))
    outcome: dict = {"rank": rank, "size": size, "nan_epoch": None, "history": dict(settings.history)}
    started = time.time()
    keras_history = model.fit(
        training_dataset(settings, rank, size),
        epochs=settings.epochs,
        initial_epoch=settings.initial_epoch,
        steps_per_epoch=settings.steps_per_epoch,
        callbacks=_callbacks(settings, model, rank, size, outcome),
        verbose=0,
    )
    outcome["seconds"] = time.time() - started
    outcome["epochs_done"] = settings.initial_epoch + len(keras_history.epoch)
    if outcome["nan_epoch"] is not None:
        outcome["epochs_done"] = outcome["nan_epoch"]
    elif rank == 0:
        check_attempt(settings)
        model.save(Path(settings.run_dir) / MODEL_FILE)
    return outcome


def pin_threads_env(threads: int) -> dict[str, str]:
    """Environment for the Horovod tasks: keep each rank's thread pools to its share of the cores."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # Petastorm 0.13.1 warns about legacy pyarrow APIs on every file it opens; the pinned pyarrow 14 keeps them.
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    return env
