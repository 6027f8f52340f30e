"""The data-parallel trainer that runs on every Horovod rank (one Spark task each).

``train_on_rank(settings)`` is what ``horovod.spark.run`` ships to the executors. Everything it needs is in one
frozen, picklable :class:`TrainSettings`. Per rank it:

- reads its files of each epoch's plan (``models.epochs``: every training row exactly once per epoch across ranks,
  the same number of steps on every rank) through Petastorm (``models.reader``) into ``tf.data``;
- trains the model of ``models.networks`` with ``hvd.DistributedOptimizer`` (learning rate scaled by the number of
  ranks after a warm-up), broadcasting rank 0's initial weights and averaging the training metrics; Keras runs
  ``nan_check_every`` steps per call into TensorFlow (``steps_per_execution``), so the per-step Python overhead
  is paid once per call;
- after each epoch evaluates its share of the validation files and sums the metric accumulators (loss sums, AUC
  confusion counts) across ranks, so every rank holds the same exact validation metrics and early stopping decides
  the same everywhere;
- checks for a NaN loss collectively every ``nan_check_every`` steps (one call), so all ranks stop at the same step;
- on rank 0, writes a checkpoint (model and optimizer state) and ``state.json`` to the run folder after each
  finished epoch, and the final model at the end: with early stopping, the weights of the epoch whose validation
  metric was best (kept in a ``best`` checkpoint), else the last epoch's.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.features.schema import FeatureSchema
from dlpipe.files import write_json_atomically
from dlpipe.models import model_file
from dlpipe.models.epochs import DataFile, plan_epoch
from dlpipe.models.networks import NetworkSettings
from dlpipe.models.reader import ReadSettings, rank_batches, rank_blocks

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
ATTEMPT_FILE = "attempt"  # the id of the launch that owns the run folder; older launches' ranks stop writing
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
VALIDATION_BATCH = 8192  # rows per forward pass when scoring the validation split
THRESHOLD_KEYS = ("threshold_f1", "threshold_rate")  # in the history (decision_thresholds), not in the epoch lines


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
    class_weights: tuple[float, float] | None = None  # training batches only: validation keeps the data's balance
    positive_rate: float | None = None  # of the training split: the ``rate`` rule's target (decision_thresholds)
    early_stopping: dict | None = None  # {"monitor", "mode", "patience", "min_delta"}
    initial_epoch: int = 0
    history: dict = field(default_factory=dict)  # of the epochs finished before a resume
    threads_per_rank: int = 1
    use_gpu: bool = False
    seed: int = 1
    nan_check_every: int = 20
    record_column: str | None = None  # tests: record the rows each rank trains on
    record_dir: str | None = None
    distributed: bool = True  # false: one process without Horovod (a trial of ``dlpipe tune``)
    scaled_as: int | None = None  # scale the learning rate as for this many ranks (a trial: train.num_proc's)
    pin_cpus: bool = True  # ranks sharing a node each get their own share of its CPUs
    log_prefix: str = "train"  # how the per-epoch lines start

    def read_settings(self, record: bool = False, validation: bool = False) -> ReadSettings:
        batch = max(self.batch_size, VALIDATION_BATCH) if validation else self.batch_size
        return ReadSettings(self.schema, batch, self.seed, self.weight_column,
                            None if validation else self.class_weights,
                            self.record_column if record else None, self.record_dir if record else None)


def checkpoint_prefix(run_dir: str | Path, epochs_done: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"epoch-{epochs_done:04d}"


def best_prefix(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / "best"


def best_epoch(settings: "TrainSettings", history: dict) -> int | None:
    """With early stopping, the epoch (1-based) whose validation ``monitor`` was best (the first of equals): the
    saved model gets its weights, as Keras' ``restore_best_weights`` does. Without early stopping: None (the last
    epoch's weights are saved)."""
    es = settings.early_stopping
    values = history.get(es["monitor"]) if es else None
    if not values:
        return None
    best = min(values) if es["mode"] == "min" else max(values)
    return values.index(best) + 1


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


def training_dataset(settings: TrainSettings, rank: int, size: int):
    """``tf.data`` of this rank's batches for epochs ``initial_epoch`` .. ``epochs - 1``, ``steps_per_epoch`` each.
    The generator hands over blocks of batches (``models.reader.rank_blocks``), which tf.data slices in C++."""
    import tensorflow as tf

    def blocks():
        for epoch in range(settings.initial_epoch, settings.epochs):
            plan = plan_epoch(settings.train_files, size, settings.batch_size, epoch, settings.seed)[rank]
            yield from rank_blocks([f.path for f in plan.files], settings.steps_per_epoch,
                                   settings.read_settings(record=True), epoch, rank)

    inputs, label, weight = _signature(settings.schema)
    block = (
        {name: tf.TensorSpec((None, *spec.shape), spec.dtype) for name, spec in inputs.items()},
        tf.TensorSpec((None, *label.shape), label.dtype),
        tf.TensorSpec((None, *weight.shape), weight.dtype),
    )
    dataset = tf.data.Dataset.from_generator(blocks, output_signature=block)
    dataset = dataset.flat_map(lambda x, y, w: tf.data.Dataset.from_tensor_slices((x, y, w))).prefetch(4)
    # No autotuning (nothing here has a tunable parallelism): its background thread made destroying the iterator at
    # the end of fit() wait up to 10 s on a random rank, and every rank's Spark task waited for the slowest.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _signature(schema: FeatureSchema):
    import tensorflow as tf

    from dlpipe.features.schema import DENSE_INPUT

    inputs = {}
    if schema.dense:
        inputs[DENSE_INPUT] = tf.TensorSpec((None, schema.dense_width), tf.float32)
    for column in schema.index:
        inputs[column.name] = tf.TensorSpec((None,), tf.int32)
    return inputs, tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.float32)


class _SingleWorker:
    """One process, no Horovod (a trial of ``dlpipe tune``): sums over ranks are the values themselves."""

    rank, size, local_rank, local_size = 0, 1, 0, 1

    def allreduce_sum(self, value, name: str):
        return value

    def optimizer(self, optimizer):
        return optimizer

    def callbacks(self, settings: "TrainSettings") -> list:
        return []

    def broadcast(self, model) -> None:
        pass


class _HorovodWorker:
    """One Horovod rank: gradients averaged by ``hvd.DistributedOptimizer``, rank 0's initial weights broadcast,
    training metrics averaged at the end of each epoch."""

    def __init__(self, sparse_as_dense: bool):
        import horovod.tensorflow.keras as hvd

        self.sparse_as_dense = sparse_as_dense
        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()

    def allreduce_sum(self, value, name: str):
        return self.hvd.allreduce(value, op=self.hvd.Sum, name=name)

    def optimizer(self, optimizer):
        return self.hvd.DistributedOptimizer(optimizer, sparse_as_dense=self.sparse_as_dense)

    def callbacks(self, settings: "TrainSettings") -> list:
        return [self.hvd.callbacks.MetricAverageCallback()]

    def broadcast(self, model) -> None:
        """Every rank starts from rank 0's weights (a resumed run: all ranks read the same checkpoint anyway)."""
        from horovod.tensorflow import broadcast_variables

        broadcast_variables(model.variables, root_rank=0)


def pin_to_cpu_share(local_rank: int, local_size: int) -> None:
    """Pin this rank to its own share of the CPUs this process may use, when several ranks share a node: the ranks
    meet in an allreduce every step, and a rank whose threads the scheduler moves around arrives late and makes
    the others wait (2 ranks on 2 cores: about 1.3x faster)."""
    if local_size < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = len(cpus) // local_size
    if share >= 1:
        os.sched_setaffinity(0, set(cpus[local_rank * share:(local_rank + 1) * share]))


DENSE_GRADIENT_LIMIT = 4_000_000  # embedding weights (16 MB of float32) up to which gradients are allreduced dense


def dense_embedding_gradients(settings: TrainSettings) -> bool:
    """Embedding gradients come as sparse row slices, which Horovod allgathers: one more collective per embedding
    and step. Small tables are cheaper to allreduce dense, fused with the other gradients (1M rows, 2 ranks:
    about 1.3x faster); big ones stay sparse."""
    from dlpipe.models.networks import embedding_size

    weights = sum(column.cardinality * (settings.network.embedding_dim or embedding_size(column.cardinality))
                  for column in settings.schema.index)
    return weights <= DENSE_GRADIENT_LIMIT


def _callbacks(settings: TrainSettings, model, world, learning_rate, outcome: dict) -> list:
    import tensorflow as tf

    from dlpipe.models.networks import loss_for

    loss_fn = tf.keras.losses.get(loss_for(settings.network, settings.loss))

    class NanGuard(tf.keras.callbacks.Callback):
        """Stop every rank at the same step once any rank's loss is NaN or infinite."""

        def _check(self, logs) -> bool:
            bad = 0.0 if math.isfinite(float(logs.get("loss", 0.0))) else 1.0
            if float(world.allreduce_sum(tf.constant(bad), "nan_guard")) > 0:
                self.model.stop_training = True
                return True
            return False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):  # once per steps_per_execution steps
            if outcome.get("nan_epoch") is None and self._check(logs or {}):
                outcome["nan_epoch"] = self.epoch

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is None and self._check(logs or {}):
                outcome["nan_epoch"] = epoch

    class ShardedValidation(tf.keras.callbacks.Callback):
        """Exact validation metrics from every rank's share of the validation files."""

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is not None or not settings.validation_files:
                return
            rank = world.rank
            plan = plan_epoch(settings.validation_files, world.size, settings.batch_size, 0, settings.seed,
                              require_all=False)
            metrics = {
                "val_loss": tf.keras.metrics.Mean(),
                "val_auc": tf.keras.metrics.AUC(num_thresholds=1000),
                "val_accuracy": tf.keras.metrics.BinaryAccuracy(),
            }
            for inputs, label, weight in rank_batches([f.path for f in plan[rank].files], None,
                                                      settings.read_settings(validation=True), 0, rank):
                score = self.model(inputs, training=False)
                metrics["val_loss"].update_state(loss_fn(label[:, None], score), sample_weight=weight)
                metrics["val_auc"].update_state(label, score[:, 0], sample_weight=weight)
                metrics["val_accuracy"].update_state(label[:, None], score, sample_weight=weight)
            for name, metric in metrics.items():
                for i, variable in enumerate(metric.variables):
                    variable.assign(world.allreduce_sum(variable.read_value(), f"{name}.{i}"))
                logs[name] = float(metric.result())
            counts = metrics["val_auc"]
            logs.update(decision_thresholds(
                counts.thresholds, *(v.numpy() for v in (counts.true_positives, counts.false_positives,
                                                         counts.true_negatives, counts.false_negatives)),
                settings.positive_rate))

    class EpochCheckpoint(tf.keras.callbacks.Callback):
        """Rank 0: model and optimizer state after each finished epoch, then state.json pointing at it."""

        def __init__(self):
            super().__init__()
            self.history = {k: list(v) for k, v in settings.history.items()}
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if outcome.get("nan_epoch") is not None:
                return
            if logs is not None:
                logs["lr"] = float(learning_rate(self.model.optimizer.iterations))
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            outcome["history"] = self.history
            if world.rank != 0:
                return
            check_attempt(settings)
            prefix = checkpoint_prefix(settings.run_dir, epoch + 1)
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(str(prefix))
            best = best_epoch(settings, self.history)
            if best == epoch + 1:  # the weights the saved model gets unless a later epoch beats them
                tf.train.Checkpoint(model=self.model).write(str(best_prefix(settings.run_dir)))
            write_json_atomically(Path(settings.run_dir) / STATE_FILE, {
                "config_hash": settings.config_hash, "epochs_done": epoch + 1, "checkpoint": prefix.name,
                "best_epoch": best, "history": self.history, "finished": False,
            })
            for old in sorted(prefix.parent.glob("epoch-*.index"))[:-KEEP_CHECKPOINTS]:
                for part in prefix.parent.glob(old.name.removesuffix(".index") + ".*"):
                    part.unlink()
            done = epoch + 1 - settings.initial_epoch
            left = (time.time() - self.started) / done * (settings.epochs - epoch - 1)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k not in THRESHOLD_KEYS)
            print(f"{settings.log_prefix}: epoch {epoch + 1}/{settings.epochs}: {summary}; about {left:.0f}s left",
                  flush=True)

    class FirstStep(tf.keras.callbacks.Callback):
        """When the first call into TensorFlow of the fit returned (the first ``steps_per_execution`` steps)."""

        def on_train_batch_end(self, batch, logs=None):
            outcome["marks"].setdefault("first_step", time.time())

    callbacks = world.callbacks(settings) + [NanGuard(), ShardedValidation(), EpochCheckpoint(), FirstStep()]
    if settings.early_stopping:
        es = settings.early_stopping
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor=es["monitor"], mode=es["mode"], patience=es["patience"], min_delta=es["min_delta"]))
    return callbacks


def decision_thresholds(thresholds, tp, fp, tn, fn, positive_rate: float | None = None) -> dict[str, float]:
    """The score thresholds two rules pick from the validation split's (weighted) confusion counts at each candidate
    threshold (a row counts as positive above it): ``threshold_f1``, the one with the highest F1, and
    ``threshold_rate``, the one whose share of rows predicted positive is closest to ``positive_rate`` (when
    given). The candidates exclude the two that sit just outside [0, 1]."""
    tp, fp, tn, fn = (np.asarray(a, np.float64)[1:-1] for a in (tp, fp, tn, fn))
    candidates = np.asarray(thresholds, np.float64)[1:-1]
    out = {}
    if (tp + fn).sum() > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.nan_to_num(2 * tp / (2 * tp + fp + fn))
        out["threshold_f1"] = float(candidates[int(np.argmax(f1))])
    total = tp + fp + tn + fn
    if positive_rate is not None and total[0] > 0:
        out["threshold_rate"] = float(candidates[int(np.argmin(np.abs((tp + fp) / total - positive_rate)))])
    return out


# The steps of a rank's start, each marked when it is done (``train_on_rank``), after the driver starts the launch:
LAUNCH_MARKS = {
    "process": "rank started",      # Horovod's Spark job, its task services, the rank's process
    "imports": "imports",           # TensorFlow and dlpipe's model code, in the rank
    "rendezvous": "rendezvous",     # Horovod's init: every rank found the others
    "model": "model",               # built, compiled, weights broadcast (and a checkpoint read when resuming)
    "first_step": "first step",     # the first call into TensorFlow: its steps (up to nan_check_every), with the
}                                   # reader's first batches and TensorFlow's tracing of the step


def _process_started() -> float | None:
    """When this process started (None where the system does not say: the launch is timed without that step)."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - a measurement never fails training
        return None


def launch_seconds(launched_at: float, marks: dict[str, float | None]) -> dict[str, float]:
    """Seconds of each step of a rank's start (``LAUNCH_MARKS``), from the driver's ``launched_at`` (one clock: on
    a cluster, the rank's host's clock against the driver's; a step that seems to end before the one before it
    took 0 s, and the next one is counted from the later mark)."""
    out, previous = {}, launched_at
    for key in LAUNCH_MARKS:
        if marks.get(key) is not None:
            out[key] = round(max(0.0, marks[key] - previous), 2)
            previous = max(previous, marks[key])
    return out


def warmup_schedule(settings: TrainSettings, size: int):
    """``learning_rate * size`` after ``warmup_epochs`` epochs of linear warm-up (``models.schedules``); ``size`` is
    ``settings.scaled_as`` when set (a tune trial on one worker that stands for ``train.num_proc`` of them)."""
    from dlpipe.models.schedules import LinearWarmup

    return LinearWarmup(settings.learning_rate, settings.scaled_as or size,
                        settings.warmup_epochs * settings.steps_per_epoch)


def make_optimizer(name: str, learning_rate, momentum: float = 0.9):
    """``adam`` or ``sgd`` (with momentum); ``learning_rate`` a number or a schedule."""
    import tensorflow as tf

    if name == "sgd":
        return tf.keras.optimizers.legacy.SGD(learning_rate, momentum=momentum)
    return tf.keras.optimizers.legacy.Adam(learning_rate)


def training_metrics() -> list:
    """The metrics every training run reports, weighted by the sample weights."""
    import tensorflow as tf

    return [tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")]


def train_on_rank(settings: TrainSettings) -> dict:
    """Train on this Horovod rank (or alone, when ``settings.distributed`` is false). Returns the rank's outcome:
    history, seconds, epochs done, NaN epoch if any, and when it reached each step of its start (``LAUNCH_MARKS``).
    """
    marks = {"process": _process_started()}
    import tensorflow as tf

    from dlpipe.models.networks import build_model, loss_for

    marks["imports"] = time.time()
    world = _HorovodWorker(dense_embedding_gradients(settings)) if settings.distributed else _SingleWorker()
    marks["rendezvous"] = time.time()
    if settings.distributed and settings.pin_cpus:
        pin_to_cpu_share(world.local_rank, world.local_size)
    if not settings.distributed:  # a reused Python worker may have trained before
        tf.keras.backend.clear_session()
    if settings.use_gpu:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            tf.config.set_visible_devices(gpus[world.local_rank % len(gpus)], "GPU")
            tf.config.experimental.set_memory_growth(gpus[world.local_rank % len(gpus)], True)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(settings.threads_per_rank)
        tf.config.threading.set_inter_op_parallelism_threads(settings.threads_per_rank)
    except RuntimeError:  # TensorFlow already started in this process (a reused Spark Python worker)
        pass

    model = build_model(settings.schema, settings.network)
    schedule = warmup_schedule(settings, world.size)
    optimizer = world.optimizer(make_optimizer(settings.optimizer, schedule, settings.momentum))
    model.compile(
        optimizer=optimizer,
        loss=loss_for(settings.network, settings.loss),
        weighted_metrics=training_metrics(),
        # one call into TensorFlow per this many steps: the per-step Python work of Keras and the callbacks
        # (which then run once per call) would otherwise cost more than the small model's step itself
        steps_per_execution=max(1, min(settings.nan_check_every, settings.steps_per_epoch)),
    )
    world.broadcast(model)
    if settings.initial_epoch > 0:
        prefix = checkpoint_prefix(settings.run_dir, settings.initial_epoch)
        tf.train.Checkpoint(model=model, optimizer=optimizer).read(str(prefix))
    marks["model"] = time.time()
    outcome: dict = {"rank": world.rank, "size": world.size, "nan_epoch": None, "history": dict(settings.history),
                     "marks": marks}
    started = time.time()
    keras_history = model.fit(
        training_dataset(settings, world.rank, world.size),
        epochs=settings.epochs,
        initial_epoch=settings.initial_epoch,
        steps_per_epoch=settings.steps_per_epoch,
        callbacks=_callbacks(settings, model, world, schedule, outcome),
        verbose=0,
    )
    outcome["seconds"] = time.time() - started
    outcome["epochs_done"] = settings.initial_epoch + len(keras_history.epoch)
    if outcome["nan_epoch"] is not None:
        outcome["epochs_done"] = outcome["nan_epoch"]
    else:
        outcome["best_epoch"] = best_epoch(settings, outcome["history"])
        if world.rank == 0:
            check_attempt(settings)
            if outcome["best_epoch"] not in (None, outcome["epochs_done"]):
                tf.train.Checkpoint(model=model).read(str(best_prefix(settings.run_dir))).expect_partial()
            model_file.save(model, Path(settings.run_dir) / MODEL_FILE)
    return outcome


def pin_threads_env(threads: int) -> dict[str, str]:
    """Environment for the Horovod tasks: keep each rank's thread pools to its share of the cores."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # Petastorm 0.13.1 warns about legacy pyarrow APIs on every file it opens; the pinned pyarrow 14 keeps them.
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    return env
