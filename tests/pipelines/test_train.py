"""Training through Horovod on Spark, in separate processes as users run it (horovod.spark.run forks the driver,
which must not have run TensorFlow, and pytest's process has): exactly-once epochs recorded by the real ranks,
validation metrics, resume after a killed run, and the failures a user can cause."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.pipelines.cli import BIN, REPO, dlpipe, ok, settings
from tests.versions import latest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(feature_data):
    return feature_data


def training_ids(data_dir: Path) -> Counter:
    artifact = latest(data_dir / "artifacts" / "features", ".json")
    files = json.loads(artifact.read_text())["feature_table"]
    table = data_dir / "warehouse" / "dlpipe.db" / "features"
    assert files["files_per_split"]["train"] == 8
    ids = Counter()
    for path in (table / "split=train").glob("*.parquet"):
        ids.update(pq.read_table(path, columns=["row_id"]).column(0).to_pylist())
    return ids


@pytest.fixture(scope="module")
def gloo_run(data_dir, tmp_path_factory):
    """Run ``exactly-once``: 2 epochs with the default Gloo controller, every rank saving the row ids it trained on
    per epoch; (the folder of those files, the run's output)."""
    record = tmp_path_factory.mktemp("record")
    code = (
        "import sys; from dlpipe.pipelines.config import load_config; from dlpipe.pipelines.session import build_session; "
        "from dlpipe.pipelines import train; "
        f"cfg = load_config('conf/demo.yaml', {settings(data_dir, 'train.epochs=2', 'train.early_stopping=null')[3::2]!r}); "
        f"train.run(build_session(cfg), cfg, run_id='exactly-once', record_dir={str(record)!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return record, out.stdout + out.stderr


def test_every_rank_sees_each_training_row_once_per_epoch(data_dir, gloo_run):
    record, log = gloo_run
    expected = training_ids(data_dir)
    for epoch in range(2):
        seen = Counter()
        for rank in range(2):
            seen.update(np.load(record / f"epoch{epoch}-rank{rank}.npy").tolist())
        assert seen == expected, f"epoch {epoch}"
    # Horovod forwards the ranks' output, prefixed [rank]<stdout>
    assert log.count("train: epoch 2/2:") == 1 and "val_auc" in log
    metadata = json.loads((_model_of(data_dir, "exactly-once") / "metadata.json").read_text())
    assert metadata["epochs_done"] == 2
    # the launch's fixed costs, step by step, in the order they happen, and in the stage's output
    launch = metadata["launch_seconds"]
    assert list(launch) == ["process", "imports", "rendezvous", "model", "first_step"], launch
    assert all(v >= 0 for v in launch.values()) and launch["imports"] > 0.5, launch  # TensorFlow's import alone
    assert f"{sum(launch.values()):.1f}s from the launch to rank 0's first step: rank started" in log
    assert len(metadata["history"]["val_auc"]) == 2 and len(metadata["history"]["loss"]) == 2
    folder = _model_of(data_dir, "exactly-once")
    assert (folder / "training_curves.png").stat().st_size > 10_000 and (folder / "model.keras").is_file()


def _connections(process) -> list:
    """The TCP connections of ``process``, none if it has ended since it was listed."""
    import psutil

    try:
        return process.net_connections("tcp")
    except psutil.NoSuchProcess:
        return []


SIGTERM_REPEATS = int(os.environ.get("DLPIPE_SIGTERM_REPEATS", "1"))  # 10 before a change to the handling lands
EPOCHS = 12  # stopped after epoch 2 and an epoch after the resume: the rest, about 1 s an epoch here, is the window


class Stopped(NamedTuple):
    run_id: str
    args: list[str]        # the command, as a scheduler starts it again
    state: Path            # the run's state.json
    killed_after: int      # epochs done when SIGKILL stopped the first try
    resumed: str           # the second try's output until SIGTERM
    sigterm: dict          # what SIGTERM left: exit code, output, the processes still alive, their sockets
    runs: str              # `dlpipe runs` after it


def _lines_until(job: subprocess.Popen, done) -> list[str]:
    seen = []
    for line in job.stdout:
        seen.append(line)
        if done(line):
            break
    return seen


@pytest.fixture(scope="module", params=range(SIGTERM_REPEATS))
def stopped(request, data_dir) -> Stopped:
    """One training run stopped twice, as machines and schedulers stop one: SIGKILL to the process group in the
    middle of training (a lost machine), then, while the same command resumes it, SIGTERM to its process group
    (what Airflow does to a task it stops), Horovod ranks running both times. The tests resume it a last time."""
    import psutil

    run_id = f"stopped-{request.param}"
    args = [str(BIN / "dlpipe"), "run", *settings(data_dir, f"train.epochs={EPOCHS}", "train.early_stopping=null",
                                                  f"train.seed={1000 + request.param}"),  # each repeat trains anew
            "--stages", "train", "--run-id", run_id]
    state = data_dir / "models" / "higgs_mlp" / "runs" / run_id / "state.json"
    job = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if state.is_file() and json.loads(state.read_text())["epochs_done"] >= 2:
            break
        time.sleep(0.2)
    assert job.poll() is None, "training ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(60)
    killed_after = json.loads(state.read_text())["epochs_done"]

    errors = data_dir / f"{run_id}.stderr"
    with errors.open("w") as stderr:
        job = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                               start_new_session=True)
    seen = _lines_until(job, lambda line: "train: resuming run" in line)
    point = re.search(rf"after epoch (\d+) of {EPOCHS}", seen[-1])
    assert point, "".join(seen[-40:]) + errors.read_text()[-3000:]
    seen += _lines_until(job, lambda line: f"train: epoch {int(point.group(1)) + 1}/{EPOCHS}:" in line)
    assert job.poll() is None, "training ended before the signal:\n" + "".join(seen[-40:])
    driver = psutil.Process(job.pid)
    family = driver.children(recursive=True)  # the JVM, its Python workers, the ranks
    listening = {(p.pid, p.name(), c.laddr.ip) for p in [driver, *family] for c in _connections(p)
                 if c.status == psutil.CONN_LISTEN}
    os.killpg(job.pid, signal.SIGTERM)
    rest, _ = job.communicate(timeout=120)
    gone, alive = psutil.wait_procs(family, timeout=60)
    sigterm = {"returncode": job.returncode, "stdout": "".join(seen) + rest, "stderr": errors.read_text(),
               "listening": listening, "alive": [p.cmdline()[:3] for p in alive]}
    runs = dlpipe("runs", "--run-id", run_id, "--config", "conf/demo.yaml", "--set", f"data_dir={data_dir}").stdout
    return Stopped(run_id, args, state, killed_after, "".join(seen), sigterm, runs)


def test_a_killed_run_resumes_from_its_last_checkpoint(stopped):
    assert 2 <= stopped.killed_after < EPOCHS
    # The killed driver's Horovod ranks may outlive it and finish one more epoch before the new launch takes the
    # run folder over (after which they stop): the resume point is whatever epoch the folder holds then.
    point = re.search(rf"train: resuming run {stopped.run_id} from its checkpoint after epoch (\d+) of {EPOCHS}",
                      stopped.resumed)
    assert point and stopped.killed_after <= int(point.group(1)) < EPOCHS, stopped.resumed[-2000:]
    resumed_at = int(point.group(1))
    assert f"train: epoch {resumed_at}/{EPOCHS}:" not in stopped.resumed, stopped.resumed[-2000:]


def test_sigterm_to_the_process_group_fails_the_stage_cleanly(stopped):
    """The stage is recorded as failed with the reason, every process ends, the command exits 143 with one line."""
    out, err = stopped.sigterm["stdout"], stopped.sigterm["stderr"]
    # every service listens on loopback only: the driver's (Horovod's among them), the JVM's (Spark's UI among
    # them), Horovod's task services in the Python workers, Gloo's in the ranks
    listening = stopped.sigterm["listening"]
    assert {"java", "python"} <= {name.rstrip(".0123456789") for _, name, _ in listening}, listening
    assert {ip for _, _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    assert stopped.sigterm["returncode"] == 143, out[-3000:] + err[-3000:]
    assert err.rstrip().splitlines()[-1] == (
        f"dlpipe run: terminated by SIGTERM (run {stopped.run_id}: the same command resumes it)"), err[-3000:]
    for noise in ("Traceback", "ConnectionRefusedError", "Py4J", "\tat org.apache"):
        assert noise not in out + err, err[-8000:]
    assert not stopped.sigterm["alive"], stopped.sigterm["alive"]
    # the SIGTERM'd try failed; the SIGKILL'd one before it never ended, and shows as running
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in stopped.runs.splitlines() if "| train " in line]
    assert sorted(r[3] for r in rows) == ["failed", "running"] and "terminated by SIGTERM" in stopped.runs, \
        stopped.runs


def test_the_stopped_run_finishes_once_and_a_truncated_model_is_saved_again(data_dir, stopped):
    args, run_id = stopped.args, stopped.run_id
    train = [*args[:args.index("run")], "train", *args[args.index("run") + 1:args.index("--stages")],
             "--run-id", run_id]  # the stage's own command: the same run
    changed = subprocess.run([*train, "--set", "train.learning_rate=0.01"], cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert changed.returncode == 1
    assert (f"dlpipe train: error: run {run_id} of higgs_mlp was started with a different config "
            "(train.learning_rate 0.001 -> 0.01)") in changed.stderr, changed.stderr[-3000:]

    resumed = ok(subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600))
    assert re.search(rf"train: resuming run {run_id} from its checkpoint after epoch (\d+) of {EPOCHS}",
                     resumed.stdout), resumed.stdout[-3000:]
    metadata = json.loads((latest(data_dir / "models" / "higgs_mlp") / "metadata.json").read_text())
    assert metadata["run_id"] == run_id and len(metadata["history"]["loss"]) == EPOCHS

    again = ok(subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600))
    assert (f"train: run {run_id} already finished as higgs_mlp {metadata['model_version']} with this config"
            in again.stdout), again.stdout[-2000:]

    # Killed while saving the model after the last epoch (a truncated model.keras, the run not yet finished): the
    # rerun saves it again from the checkpoint and promotes only a complete file.
    from dlpipe.models import model_file

    run_dir = stopped.state.parent
    write = json.loads(stopped.state.read_text())
    stopped.state.write_text(json.dumps({**write, "finished": False}))
    saved = run_dir / "model.keras"
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    assert model_file.problem(saved) is not None
    again = ok(subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600))
    assert f"train: every epoch of run {run_id} is done but its model file is not ({saved} " in again.stdout
    promoted = latest(data_dir / "models" / "higgs_mlp")
    assert promoted.name != metadata["model_version"] and model_file.problem(promoted / "model.keras") is None
    assert json.loads((promoted / "metadata.json").read_text())["history"] == metadata["history"]


def test_nan_loss_stops_every_rank_with_a_clear_message(data_dir):
    out = dlpipe("train", *settings(data_dir, "train.optimizer=sgd", "train.learning_rate=1e12", "train.epochs=3"))
    assert out.returncode == 1
    assert "dlpipe train: error: training stopped: the loss became NaN or infinite in epoch 1" in out.stderr
    assert "Lower train.learning_rate" in out.stderr


def _validation_rows(data_dir: Path, table: str, columns: list[str]) -> dict:
    folder = data_dir / "warehouse" / "dlpipe.db" / table / "split=validation"
    tables = [pq.read_table(path) for path in sorted(folder.glob("*.parquet"))]
    return {c: np.concatenate([t.column(c).to_numpy(zero_copy_only=False) for t in tables]) for c in columns}


def test_sample_weights_weight_the_loss_and_the_validation_metrics(data_dir):
    """Event weights from a passthrough column: the validation loss training reports is the weighted mean of the
    saved model's losses on the validation rows, which differs from the unweighted one. Balanced class weights
    multiply the training rows' weights and leave validation alone. (Two of the masses are piecewise-linear
    encoded, so their vectors go through Petastorm and the model too.)"""
    import tensorflow as tf

    from dlpipe.features.schema import FeatureSchema
    from dlpipe.models.networks import model_inputs

    ok(dlpipe("run", *settings(data_dir, "stages=[featurize, train]", "featurize.output_table=weighted_features",
                               "featurize.passthrough=[true_prob]", "train.sample_weight=true_prob",
                               "train.model_name=weighted_mlp", "train.epochs=2", "train.early_stopping=null",
                               "train.class_weight=balanced",
                               "featurize.numeric=[lepton_pt, lepton_eta, jet1_eta, {columns: [m_jj, m_bb], "
                               "transform: ple, bins: 8}]")))
    folder = latest(data_dir / "models" / "weighted_mlp")
    metadata = json.loads((folder / "metadata.json").read_text())
    ple = {c["name"]: c["shape"] for c in metadata["feature_schema"]["features"] if c["name"].endswith("_ple")}
    assert ple == {"m_jj_ple": [8], "m_bb_ple": [8]}
    assert metadata["train_config"]["sample_weight"] == "true_prob"
    assert metadata["class_weights"]["0"] > 0 and metadata["class_weights"]["1"] > 0
    schema = FeatureSchema.from_json(metadata["feature_schema"])
    rows = _validation_rows(data_dir, "weighted_features", [*schema.feature_columns, schema.label, "true_prob"])
    rows = {k: np.stack(v) if v.dtype == object else v for k, v in rows.items()}
    model = tf.keras.models.load_model(folder / "model.keras", compile=False)
    score = model.predict(model_inputs(schema, rows), batch_size=4096, verbose=0)[:, 0].astype(np.float64)
    label, weight = rows[schema.label].astype(np.float64), rows["true_prob"].astype(np.float64)
    score = np.clip(score, 1e-7, 1 - 1e-7)
    losses = -(label * np.log(score) + (1 - label) * np.log(1 - score))
    weighted, plain = (weight * losses).sum() / weight.sum(), losses.mean()
    reported = metadata["history"]["val_loss"][-1]
    assert abs(reported - weighted) < 1e-4, (reported, weighted, plain)
    assert abs(weighted - plain) > 1e-3


def test_the_autoencoder_trains_end_to_end_and_scores_anomalies(data_dir):
    import tensorflow as tf

    from dlpipe.features.schema import FeatureSchema
    from dlpipe.models.networks import model_inputs

    out = ok(dlpipe("train", *settings(data_dir, "train.model=autoencoder", "train.model_name=events_autoencoder",
                                       "train.epochs=3", "train.early_stopping={monitor: val_loss, patience: 2}")))
    assert "autoencoder events_autoencoder on 2 Horovod workers" in out.stdout
    folder = latest(data_dir / "models" / "events_autoencoder")
    metadata = json.loads((folder / "metadata.json").read_text())
    history = metadata["history"]
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]  # reconstruction improves
    schema = FeatureSchema.from_json(metadata["feature_schema"])
    rows = _validation_rows(data_dir, "features", list(schema.feature_columns))
    rows = {k: np.stack(v) if v.dtype == object else v for k, v in rows.items()}
    model = tf.keras.models.load_model(folder / "model.keras", compile=False)
    inputs = model_inputs(schema, rows)
    score = model.predict(inputs, batch_size=4096, verbose=0)[:, 0]
    assert ((score >= 0) & (score < 1)).all() and score.std() > 0
    # with early stopping the saved weights are those of the epoch with the best val_loss, not the last epoch's
    best = int(np.argmin(history["val_loss"])) + 1
    assert metadata["best_epoch"] == best
    reconstruction_loss = float(np.mean(-np.log(np.maximum(1.0 - score.astype(np.float64), 1e-12))))
    assert abs(reconstruction_loss - history["val_loss"][best - 1]) < 1e-3 * history["val_loss"][best - 1]
    # rows pushed far off the training distribution score as more anomalous
    shifted = {**inputs, "dense": inputs["dense"] + 5.0}
    assert model.predict(shifted, batch_size=4096, verbose=0)[:, 0].mean() > score.mean()


def _model_of(data_dir: Path, run_id: str) -> Path:
    for path in (data_dir / "models" / "higgs_mlp").glob("v*/metadata.json"):
        if json.loads(path.read_text())["run_id"] == run_id:
            return path.parent
    raise AssertionError(f"no model of run {run_id}")


def _history(data_dir: Path, run_id: str) -> dict:
    return json.loads((_model_of(data_dir, run_id) / "metadata.json").read_text())["history"]


def test_the_mpi_controller_trains_the_same_model_as_gloo(data_dir, gloo_run):
    """train.controller: mpi (Open MPI's mpirun through Spark's tasks) averages the same gradients as Gloo: with
    the same seed and settings as the Gloo run, the two runs' per-epoch metrics agree."""
    out = ok(dlpipe("train", *settings(data_dir, "train.epochs=2", "train.early_stopping=null",
                                       "train.controller=mpi"), "--run-id", "controller-mpi"))
    assert "on 2 Horovod workers" in out.stdout
    mpi, gloo = _history(data_dir, "controller-mpi"), _history(data_dir, "exactly-once")
    for metric in ("loss", "val_loss", "val_auc"):
        assert np.allclose(mpi[metric], gloo[metric], rtol=1e-5), metric


def test_the_mpi_environment_finds_the_venvs_open_mpi_and_keeps_what_the_user_set():
    from dlpipe.pipelines.errors import PipelineError
    from dlpipe.pipelines.train import mpi_env

    env = mpi_env({"PATH": "/nonexistent", "HOROVOD_CYCLE_TIME": "2"})
    folder = env["PATH"].split(os.pathsep)[0]
    assert Path(folder, "mpirun").is_file() and env["PATH"].endswith("/nonexistent")
    assert Path(env["OPAL_PREFIX"], "lib", "libmpi.so.40").exists()
    assert env["OMPI_MCA_mpi_yield_when_idle"] == "1" and env["HOROVOD_CYCLE_TIME"] == "2"
    with pytest.raises(PipelineError, match=r"no Open MPI daemon /nonexistent/bin/orted \(OPAL_PREFIX names the wrong"):
        mpi_env({"OPAL_PREFIX": "/nonexistent"})
