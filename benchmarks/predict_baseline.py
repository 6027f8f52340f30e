"""The single-process limit for ``infer_vs_predict``: ``model.predict`` on the featurized rows held in memory as
NumPy arrays, same model and batch size as the scoring UDF, ``repeats`` times. Its own process (TensorFlow stays out of the
benchmark's Spark driver): ``python -m benchmarks.predict_baseline JOB.json`` prints one JSON line."""
from __future__ import annotations

import json
import statistics
import sys
import time

from benchmarks import training_data
from benchmarks.measure import PeakMemory


def main(path: str) -> None:
    import tensorflow as tf

    from dlpipe.features.schema import FeatureSchema

    job = json.loads(open(path).read())
    schema = FeatureSchema.from_json(job["schema"])
    with PeakMemory() as memory:
        started = time.perf_counter()
        x, _ = training_data.read_numpy(schema, job["files"])
        load_seconds = time.perf_counter() - started
        model = tf.keras.models.load_model(job["model"], compile=False)
        timings = []
        for _ in range(job["repeats"]):
            started = time.perf_counter()
            scores = model.predict(x, batch_size=job["batch_size"], verbose=0)
            timings.append(time.perf_counter() - started)
    print(json.dumps({"rows": len(scores), "load_seconds": round(load_seconds, 3),
                      "predict_seconds": round(statistics.median(timings), 3),
                      "predict_seconds_range": [round(min(timings), 3), round(max(timings), 3)],
                      "peak_mem_mb": round(memory.peak_mb, 1)}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
