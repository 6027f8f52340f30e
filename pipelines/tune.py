"""``dlpipe tune``: a hyperparameter scan. Every trial is one config drawn from ``tune.space`` and trained on one
worker (no Horovod) inside one Spark task; the trials are independent, so Spark runs as many at once as it has task
slots. Each trial streams the same feature table files as ``dlpipe train`` (Petastorm, every training row once per
epoch), validates every epoch and stops early by the train config's rule.

A trial trains as ``dlpipe train`` would on ``train.num_proc`` workers, so that the best trial's line reproduces
it: each step takes the global batch (``batch_size`` rows per worker times the workers), and the learning rate is
scaled by the workers after the same warm-up (Goyal et al. 2017). Only the order of rows within an epoch differs.

The results go to a Delta table (``tune.output_table``), one row per trial, ranked by ``tune.metric`` at the
trial's best epoch; a rerun of the same scan id replaces that scan's rows. The best config is printed as the
``--set`` options that train it with ``dlpipe train``. Each trial's folder (checkpoints, final model) is
``<data_dir>/models/<model_name>/tune/<scan id>/trial-<n>/``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import shutil
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession

from dlpipe.models.epochs import PlanError, steps_per_epoch
from dlpipe.models.trainer import ATTEMPT_FILE, TrainSettings, train_on_rank
from dlpipe.pipelines.config import Config, TuneConfig
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.run_id import check_run_id, new_run_id
from dlpipe.pipelines.session import training_workers
from dlpipe.pipelines.store import model_folder
from dlpipe.pipelines.train import (class_weights, early_stopping_settings, label_totals, network_settings,
                                    training_inputs)

RESULT_SCHEMA = (
    "tune_id string, trial int, rank int, status string, params string, metric string, value double, "
    "best_epoch int, epochs_done int, val_auc double, val_loss double, val_accuracy double, seconds double, "
    "error string, trial_dir string, created_at timestamp"
)


@dataclass(frozen=True)
class TuneResult:
    tune_id: str
    table: str
    trials: list[dict]  # ranked, best first
    seconds: float

    @property
    def best(self) -> dict:
        return self.trials[0]


def trial_params(tune: TuneConfig) -> list[dict]:
    """The configs to try: every combination of the lists (grid), or ``tune.trials`` draws (random, seeded)."""
    keys = list(tune.space)
    if tune.strategy == "grid":
        combos = [dict(zip(keys, values)) for values in itertools.product(*(tune.space[k] for k in keys))]
        return [{k: TuneConfig.candidate(k, v, k) for k, v in combo.items()} for combo in combos]
    rng = np.random.default_rng(tune.seed)
    draws, seen = [], set()
    for _ in range(tune.trials * 50):  # a small space of lists may not hold `trials` distinct configs
        params = {key: TuneConfig.candidate(key, _draw(tune.space[key], rng), key) for key in keys}
        token = json.dumps(params, sort_keys=True, default=list)
        if token not in seen:
            seen.add(token)
            draws.append(params)
        if len(draws) == tune.trials:
            break
    return draws


def _draw(values, rng: np.random.Generator):
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    low, high = float(values["low"]), float(values["high"])
    value = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if values.get("log") else float(rng.uniform(low, high))
    if isinstance(values["low"], int) and isinstance(values["high"], int):
        return int(round(value))
    return float(f"{value:.4g}")


def _run_trial(item: tuple[int, TrainSettings]) -> dict:
    """One trial, in a Spark task: train alone, return the outcome (never raise: a failed trial is a result)."""
    number, settings = item
    started = time.time()
    try:
        with warnings.catch_warnings():  # Petastorm 0.13.1 warns about pyarrow 14's legacy APIs for every file
            warnings.simplefilter("ignore", FutureWarning)
            outcome = train_on_rank(settings)
        status = "nan" if outcome["nan_epoch"] is not None else "ok"
        return {"trial": number, "status": status, "history": outcome["history"], "seconds": time.time() - started,
                "epochs_done": int(outcome["epochs_done"]), "error": None}
    except Exception as err:  # reported in the results table and on the console
        traceback.print_exc()
        return {"trial": number, "status": "failed", "history": {}, "seconds": time.time() - started,
                "epochs_done": 0, "error": f"{type(err).__name__}: {err}"[:500]}


def _summary(tune: TuneConfig, number: int, params: dict, result: dict) -> dict:
    history = result["history"]
    values = history.get(tune.metric) or []
    best = None
    if result["status"] == "ok" and values:
        best = int(np.argmin(values) if tune.mode == "min" else np.argmax(values))
    at = (lambda key: float(history[key][best]) if best is not None and history.get(key) else None)
    return {
        "trial": number, "status": result["status"], "params": params, "metric": tune.metric,
        "value": at(tune.metric), "best_epoch": None if best is None else best + 1,
        "epochs_done": result["epochs_done"], "val_auc": at("val_auc"), "val_loss": at("val_loss"),
        "val_accuracy": at("val_accuracy"), "seconds": round(result["seconds"], 2), "error": result["error"],
    }


def rank_trials(tune: TuneConfig, trials: list[dict]) -> list[dict]:
    """Best first by the metric; trials without a value (NaN loss, failure) last, in trial order."""
    sign = 1.0 if tune.mode == "min" else -1.0
    ranked = sorted(trials, key=lambda t: (t["value"] is None, sign * (t["value"] or 0.0), t["trial"]))
    return [{**t, "rank": i + 1} for i, t in enumerate(ranked)]


def _set_options(params: dict, workers: int) -> str:
    """``--set train.key=value`` for each param, as a shell takes them, and the workers the trials stood for."""
    options = [f"--set train.num_proc={workers}"]
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value,
                                                               separators=(",", ":"))
        options.append(f"--set train.{key}={text}")
    return " ".join(options)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> TuneResult:
    """Run the scan ``cfg.tune`` on the feature table; ``run_id`` names the scan (a rerun replaces its rows)."""
    started = time.time()
    tune, tc = cfg.tune, cfg.train
    tune_id = check_run_id(run_id or new_run_id())
    if cfg.train.early_stopping is not None and cfg.train.early_stopping.monitor != tune.metric:
        print(f"tune: note: trials stop early on {cfg.train.early_stopping.monitor} and are ranked by {tune.metric}")
    inputs = training_inputs(spark, cfg)
    params = trial_params(tune)
    slots = spark.sparkContext.defaultParallelism
    parallel = min(slots, len(params))
    folder = model_folder(cfg, tc.model_name) / "tune" / tune_id
    shutil.rmtree(folder, ignore_errors=True)

    weights = class_weights(cfg, inputs, label_totals(spark, cfg, inputs)) if tc.class_weight else None
    workers = training_workers(spark, cfg)  # the trials stand for a training on this many workers
    settings = []
    for number, trial in enumerate(params, start=1):
        trial_cfg = dataclasses.replace(cfg, train=dataclasses.replace(tc, **trial))
        t = trial_cfg.train
        epochs = tune.epochs or t.epochs
        try:
            steps = steps_per_epoch(inputs.train_files, 1, t.batch_size * workers, epochs, t.seed)
        except PlanError as err:
            raise PipelineError(f"cannot tune on {inputs.table}: {err}") from None
        run_dir = folder / f"trial-{number}"
        run_dir.mkdir(parents=True)
        (run_dir / ATTEMPT_FILE).write_text(tune_id + "\n")
        settings.append((number, TrainSettings(
            train_files=inputs.train_files, validation_files=inputs.validation_files, schema=inputs.schema,
            network=network_settings(trial_cfg), epochs=epochs, batch_size=t.batch_size * workers,
            steps_per_epoch=steps, learning_rate=t.learning_rate, scaled_as=workers, run_dir=str(run_dir),
            config_hash=tune_id, attempt=tune_id, optimizer=t.optimizer, momentum=t.momentum, loss=t.loss,
            warmup_epochs=t.warmup_epochs,
            weight_column=t.sample_weight, class_weights=weights,
            early_stopping=early_stopping_settings(trial_cfg),
            threads_per_rank=max(1, slots // parallel), use_gpu=t.use_gpu, seed=t.seed, distributed=False,
            log_prefix=f"tune: trial {number}",
        )))
    print(f"tune: scan {tune_id}: {len(params)} {tune.strategy} trials of {tc.model} {tc.model_name}, {parallel} at a "
          f"time, each on one worker as a training on {workers} (train.num_proc): {inputs.train_rows:,} training "
          f"rows, ranked by {tune.metric}")
    outcomes = (spark.sparkContext.parallelize(settings, len(settings)).map(_run_trial)
                .collect())
    by_number = {o["trial"]: o for o in outcomes}
    trials = rank_trials(tune, [_summary(tune, n, p, by_number[n]) for n, p in enumerate(params, start=1)])
    if all(t["value"] is None for t in trials):
        errors = "; ".join(f"trial {t['trial']}: {t['error'] or t['status']}" for t in trials[:3])
        raise PipelineError(f"every trial of scan {tune_id} failed ({errors})")

    table = cfg.qualified(tune.output_table)
    _write(spark, table, tune_id, trials, folder)
    _print(tune, tune_id, trials, table, _pipeline_file(cfg), workers)
    return TuneResult(tune_id, table, trials, time.time() - started)


def _write(spark: SparkSession, table: str, tune_id: str, trials: list[dict], folder) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [(tune_id, t["trial"], t["rank"], t["status"],
             json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in t["params"].items()}),
             t["metric"], t["value"], t["best_epoch"], t["epochs_done"], t["val_auc"], t["val_loss"],
             t["val_accuracy"], float(t["seconds"]), t["error"], str(folder / f"trial-{t['trial']}"), now)
            for t in trials]
    df = spark.createDataFrame(rows, RESULT_SCHEMA)
    if spark.catalog.tableExists(table):
        # the same scan id again replaces its rows, atomically, in one Delta commit
        df.write.format("delta").mode("overwrite").option("replaceWhere", f"tune_id = '{tune_id}'").saveAsTable(table)
    else:
        df.write.format("delta").saveAsTable(table)


def _pipeline_file(cfg: Config) -> str | None:
    """The pipeline YAML the user named (not the base and local layers under and over it)."""
    named = [f for f in cfg.source_files if Path(f).name not in ("base.yaml", "local.yaml")]
    return named[-1] if named else None


def _print(tune: TuneConfig, tune_id: str, trials: list[dict], table: str, config_file: str | None,
           workers: int) -> None:
    keys = list(tune.space)
    header = ["rank", "trial", *keys, tune.metric, "best epoch", "seconds", "status"]
    lines = []
    for t in trials:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        params = [str(list(v) if isinstance(v, tuple) else v) for v in (t["params"][k] for k in keys)]
        lines.append([str(t["rank"]), str(t["trial"]), *params, value, str(t["best_epoch"] or "-"),
                      f"{t['seconds']:.0f}", t["status"]])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    print(f"\ntune: scan {tune_id} written to {table} (SELECT * FROM {table} WHERE tune_id = '{tune_id}' ORDER BY rank)")
    for row in [header, *lines]:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    best = trials[0]
    print(f"tune: best: trial {best['trial']}, {tune.metric} {best['value']:.4f} at epoch {best['best_epoch']}; "
          f"train it with: dlpipe train {'--config ' + config_file + ' ' if config_file else ''}"
          f"{_set_options(best['params'], workers)}")
    for t in trials:
        if t["status"] == "failed":
            print(f"tune: trial {t['trial']} failed: {t['error']}")
