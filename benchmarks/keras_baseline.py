"""The single-process limit for ``train_vs_keras``: ``tf.keras`` ``fit`` on the feature table's rows held in memory
as NumPy arrays, the same model, optimizer, loss, metrics, batch size and epochs as dlpipe's ranks, validation
every epoch. Runs in its own process (the benchmark's driver must not have run TensorFlow before Horovod forks
it): ``python -m benchmarks.keras_baseline SETTINGS.json`` prints one JSON line."""
from __future__ import annotations

import json
import sys
import time

from benchmarks import training_data


def main(path: str) -> None:
    import tensorflow as tf

    from dlpipe.features.schema import FeatureSchema
    from dlpipe.models.networks import NetworkSettings, build_model, loss_for
    from dlpipe.models.trainer import make_optimizer, training_metrics

    job = json.loads(open(path).read())
    schema = FeatureSchema.from_json(job["schema"])
    network = NetworkSettings(**{**job["network"], "hidden_units": tuple(job["network"]["hidden_units"])})
    started = time.perf_counter()
    x, y = training_data.read_numpy(schema, job["train_files"])
    xv, yv = training_data.read_numpy(schema, job["validation_files"])
    load_seconds = time.perf_counter() - started
    tf.keras.utils.set_random_seed(network.seed)
    model = build_model(schema, network)
    model.compile(optimizer=make_optimizer(job["optimizer"], job["learning_rate"], job["momentum"]),
                  loss=loss_for(network, job["loss"]), weighted_metrics=training_metrics())
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=job["batch_size"], epochs=job["epochs"], validation_data=(xv, yv),
                        shuffle=True, verbose=0)
    fit_seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(y), "load_seconds": round(load_seconds, 3), "fit_seconds": round(fit_seconds, 3),
                      "val_auc": round(history.history["val_auc"][-1], 4)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
