"""reader_vs_pyarrow: the training read path alone, no model: rows/s of Petastorm -> ``tf.data`` against pyarrow
reading the same files into NumPy.

- dlpipe: one epoch of ``models.trainer.training_dataset`` for one rank holding every training file: Petastorm's
  batch reader (dummy pool), the seeded shuffle buffer, batches of ``train.batch_size`` arranged as model inputs,
  through ``tf.data.Dataset.from_generator`` with prefetch, iterated to the end in TensorFlow.
- pyarrow (the limit): ``pyarrow.parquet.read_table`` of each whole file and conversion of the same columns to the
  same NumPy model inputs, without batching, shuffling or TensorFlow.

Both read the feature table of ``benchmarks.training_data`` (the demo spec on ``--rows`` generated rows, made once).
They alternate three times, medians reported; the file cache is warm for both after the first round.
"""
from __future__ import annotations

import json
import statistics
import time

from benchmarks import training_data

DEFAULT_ROWS = 1_000_000
REPEATS = 3


def read_with_tf_data(settings) -> int:
    from dlpipe.models.trainer import training_dataset

    rows = 0
    for _inputs, label, weight in training_dataset(settings, rank=0, size=1):
        rows += int((weight.numpy() > 0).sum())
    return rows


def main(rows: int) -> None:
    from dlpipe.models.epochs import steps_per_epoch
    from dlpipe.models.networks import NetworkSettings
    from dlpipe.models.trainer import TrainSettings
    from dlpipe.pipelines.session import build_session

    cfg = training_data.config(rows)
    spark = build_session(cfg)
    try:
        training_data.prepare(spark, cfg)
        schema, train_files, _ = training_data.feature_files(spark, cfg)
    finally:
        spark.stop()
    tc = cfg.train
    total = sum(f.rows for f in train_files)
    settings = TrainSettings(
        train_files=train_files, validation_files=(), schema=schema, network=NetworkSettings(),
        epochs=1, batch_size=tc.batch_size, steps_per_epoch=steps_per_epoch(train_files, 1, tc.batch_size, 1, tc.seed),
        learning_rate=tc.learning_rate, run_dir=str(cfg.data_path / "tmp"), config_hash="bench", seed=tc.seed,
    )
    paths = [f.path for f in train_files]
    times: dict[str, list[float]] = {"pyarrow": [], "petastorm_tf_data": []}
    for _ in range(REPEATS):
        started = time.perf_counter()
        inputs, labels = training_data.read_numpy(schema, paths)
        times["pyarrow"].append(time.perf_counter() - started)
        assert len(labels) == total
        del inputs, labels
        started = time.perf_counter()
        seen = read_with_tf_data(settings)
        times["petastorm_tf_data"].append(time.perf_counter() - started)
        assert seen == total, f"the reader yielded {seen} rows of {total}"
    median = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "name": "reader_vs_pyarrow",
        "rows": total,
        "files": len(paths),
        "batch_size": tc.batch_size,
        "seconds": round(median["petastorm_tf_data"], 3),
        "rows_per_s": round(total / median["petastorm_tf_data"]),
        "seconds_range": [round(min(times["petastorm_tf_data"]), 3), round(max(times["petastorm_tf_data"]), 3)],
        "baseline": "pyarrow read_table -> NumPy model inputs",
        "baseline_seconds": round(median["pyarrow"], 3),
        "baseline_rows_per_s": round(total / median["pyarrow"]),
        "baseline_seconds_range": [round(min(times["pyarrow"]), 3), round(max(times["pyarrow"]), 3)],
        "ratio": round(median["pyarrow"] / median["petastorm_tf_data"], 3),
    }), flush=True)
