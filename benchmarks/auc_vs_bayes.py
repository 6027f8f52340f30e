"""auc_vs_bayes: model quality. The default deep network of the demo config (its train section as it is: epochs,
early stopping, 2 Horovod workers) trained on the feature table of ``benchmarks.training_data``, then scored and
evaluated by the pipeline's own infer and evaluate stages on the validation split.

``auc`` is evaluate's AUC of the model's scores, ``bayes_auc`` the AUC of the generator's true probabilities
(``true_prob``) on the same rows: the best any model can reach on this data. ``ratio`` is auc / bayes_auc.
``val_auc`` is the validation AUC training measured (1,000 thresholds, summed over ranks) at ``best_epoch``, whose
weights the saved model has.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import training_data

DEFAULT_ROWS = 1_000_000


def main(rows: int) -> None:
    from dlpipe.pipelines import evaluate, infer, train
    from dlpipe.pipelines.session import build_session

    cfg = training_data.config(rows)
    spark = build_session(cfg)
    run_id = f"bench-{int(time.time())}"
    try:
        training_data.prepare(spark, cfg)
        started = time.perf_counter()
        trained = train.run(spark, cfg, run_id=run_id)
        train_seconds = time.perf_counter() - started
        infer.run(spark, cfg, run_id=run_id)
        result = evaluate.run(spark, cfg, run_id=run_id)
    finally:
        spark.stop()
    best = json.loads((Path(trained.model_path) / "metadata.json").read_text())["best_epoch"]
    print(json.dumps({
        "name": "auc_vs_bayes",
        "rows": rows,
        "evaluated_rows": result.rows,
        "split": result.split,
        "epochs_done": trained.epochs_done,
        "best_epoch": best,
        "train_seconds": round(train_seconds, 1),
        "val_auc": round(trained.history["val_auc"][(best or trained.epochs_done) - 1], 4),
        "auc": round(result.auc, 4),
        "baseline": "Bayes-optimal AUC (generator's true probabilities)",
        "bayes_auc": round(result.reference_auc, 4),
        "ratio": round(result.auc / result.reference_auc, 4),
    }), flush=True)
