"""allreduce_latency: what one Horovod allreduce costs between the 2 ranks of a training job on this machine,
against a message round trip between two processes (the floor of any exchange). A diagnostic for
``train_vs_keras``: every training step waits for one allreduce of the gradients.

- Horovod: ``horovod.spark.run`` with 2 ranks and the Gloo controller, launched and pinned as training launches its
  ranks (``pipelines.train``, ``models.trainer.pin_to_cpu_share``). Each rank runs ``--rows N`` allreduces (default
  2,000) of a small tensor (256 float32) and of one the size of the demo network's gradients, 20 per call into
  TensorFlow as training runs its steps; ``allreduce_ms`` is the mean per allreduce, both ranks agreeing.
- Baseline: a one-byte request and answer over a socket pair between two processes, each pinned to its own core
  (``rtt_ms``).

``ratio`` is ``rtt_ms / allreduce_ms`` for the gradient-sized tensor: how far the allreduce is from the round trip.
The output also gives what the allreduces add to ``train_vs_keras``'s fit (its steps times ``allreduce_ms``).
"""
from __future__ import annotations

import json
import os
import socket
import time

DEFAULT_ROWS = 2_000  # allreduces per tensor size
CALL = 20  # allreduces per call into TensorFlow, as training's steps_per_execution
SMALL = 256


def measure_rank(count: int, schema_json: str, network) -> dict:
    """On each Horovod rank: mean milliseconds per allreduce of float32 tensors of a small size and of the size of
    the network's gradients (its parameter count, from the model built here: the driver keeps TensorFlow out)."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from dlpipe.features.schema import FeatureSchema
    from dlpipe.models.networks import build_model
    from dlpipe.models.trainer import pin_to_cpu_share

    hvd.init()
    pin_to_cpu_share(hvd.local_rank(), hvd.local_size())
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    params = int(build_model(FeatureSchema.from_json(schema_json), network).count_params())
    sizes = (SMALL, params)
    result = {}
    for size in sizes:
        @tf.function
        def chain(x):
            for i in range(CALL):
                x = hvd.allreduce(x, name=f"latency.{size}.{i}")
            return x

        x = tf.ones([size])
        chain(x)  # trace and warm up
        calls = max(1, count // CALL)
        started = time.perf_counter()
        for _ in range(calls):
            x = chain(x)
        result[size] = (time.perf_counter() - started) / (calls * CALL) * 1e3
    return {"rank": hvd.rank(), "params": params, "ms": result}


def round_trip_ms(count: int) -> float:
    """Mean milliseconds of a one-byte request and answer between two processes on two cores."""
    ours, theirs = socket.socketpair()
    cpus = sorted(os.sched_getaffinity(0))
    child = os.fork()
    if child == 0:
        ours.close()
        os.sched_setaffinity(0, {cpus[-1]})
        for _ in range(count):
            theirs.recv(1)
            theirs.send(b"a")
        os._exit(0)
    theirs.close()
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        started = time.perf_counter()
        for _ in range(count):
            ours.send(b"q")
            ours.recv(1)
        return (time.perf_counter() - started) / count * 1e3
    finally:
        os.sched_setaffinity(0, previous)
        os.waitpid(child, 0)
        ours.close()


def demo_network():
    """From ``train_vs_keras``'s run: the schema of the demo feature table, the demo config's network, and the
    steps each of its ranks ran (``models.epochs``' plan for 2 ranks, over all its epochs)."""
    import pyarrow.parquet as pq

    from benchmarks import training_data
    from dlpipe.models.epochs import DataFile, steps_per_epoch
    from dlpipe.pipelines import train

    cfg = training_data.config(1_000_000)
    path = cfg.data_path / "tmp" / "keras_baseline.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python -m benchmarks train_vs_keras` once first")
    job = json.loads(path.read_text())
    files = tuple(DataFile(f, pq.ParquetFile(training_data.local_path(f)).metadata.num_rows)
                  for f in job["train_files"])
    steps = steps_per_epoch(files, 2, job["batch_size"], job["epochs"], cfg.train.seed) * job["epochs"]
    return cfg, job["schema"], train.network_settings(cfg), steps


def main(count: int) -> None:
    import horovod.spark

    from dlpipe.pipelines.session import build_session
    from dlpipe.pipelines.train import pin_threads_env

    cfg, schema_json, network, steps = demo_network()
    rtt = round_trip_ms(count)
    spark = build_session(cfg)
    try:
        ranks = horovod.spark.run(measure_rank, args=(count, schema_json, network), num_proc=2, use_gloo=True,
                                  env=pin_threads_env(1), verbose=0)
    finally:
        spark.stop()
    params = ranks[0]["params"]
    small = max(r["ms"][SMALL] for r in ranks)
    gradients = max(r["ms"][params] for r in ranks)
    print(json.dumps({
        "name": "allreduce_latency",
        "rows": count,
        "allreduce_ms_small": round(small, 3),
        "gradient_floats": params,
        "allreduce_ms": round(gradients, 3),
        "baseline": "one-byte socket round trip between two processes on two cores",
        "rtt_ms": round(rtt, 4),
        "ratio": round(rtt / gradients, 4),
        "train_vs_keras_steps": steps,
        "train_vs_keras_allreduce_s": round(steps * gradients / 1e3, 2),
    }), flush=True)
