"""Stage ``evaluate``: join a run's predictions to the input's labels and compute metrics in Spark.

Reads the predictions of one run (default: the latest) and the labelled input; computes AUC, accuracy, log loss
and the confusion matrix at ``infer.threshold`` from a score histogram (``pipelines.binary_metrics``: only the
histogram reaches the driver), each row weighted by ``train.sample_weight`` when the config names one; writes one
row to the Delta table ``evaluate.metrics_table`` (replacing an earlier evaluation of the same run) and saves the
ROC curve, the score distribution per class and the calibration curve as PNG files under
``<data_dir>/evaluations/<run id>/``.

With ``evaluate.event_weight`` (a physics sample's event weights) it also scans the approximate median
significance (AMS, ``binary_metrics.ams``) over score thresholds: the weights of each class are scaled so that the
evaluated split stands for the whole labelled input, as in the HiggsML challenge, and the best AMS, its threshold
and a plot of the scan are written beside the other metrics.
"""
from __future__ import annotations

import datetime as dt
import time
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dlpipe.features.expressions import encoded_label
from dlpipe.features.spec import FeatureSpec, LabelSpec
from dlpipe.features.split import assign_split
from dlpipe.pipelines.binary_metrics import B_REG, BinaryMetrics, binary_metrics, sliced_binary_metrics
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.plots import save_ams, save_calibration, save_roc_curve, save_score_distributions
from dlpipe.pipelines.run_id import check_run_id
from dlpipe.pipelines.stage import Stage, StageContext, StageOutputs, StagePlan, section, source_input
from dlpipe.pipelines.store import decision_threshold, load_artifact, load_model_metadata
from dlpipe.pipelines.tables import read_source, replace_run_rows

LABEL = "__label"  # the encoded 0/1 label the metrics compare scores with
METRICS_SCHEMA = (
    "run_id string, model_name string, model_version string, split string, rows long, weight_column string, "
    "weight double, auc double, accuracy double, log_loss double, threshold double, true_positives double, "
    "false_positives double, true_negatives double, false_negatives double, precision double, recall double, "
    "reference_auc double, event_weight_column string, ams double, ams_threshold double, plots string, "
    "evaluated_at timestamp, slice_columns string, slice_values string, slice_flagged boolean"
)


@dataclass(frozen=True)
class Significance:
    """The best AMS of a score cut, with event weights scaled so the evaluated rows stand for the whole input."""
    value: float
    threshold: float
    column: str                # the event weight column
    signal_scale: float        # (whole input's weight) / (evaluated rows' weight), per class
    background_scale: float


@dataclass(frozen=True)
class SliceMetrics:
    """The metrics of one slice: the rows with these values of these columns."""
    columns: tuple[str, ...]
    values: tuple            # one per column (None: null)
    metrics: BinaryMetrics
    flagged: bool            # its AUC is more than evaluate.slice_auc_margin below the overall AUC

    @property
    def label(self) -> str:
        """``origin=JFK, month=7``."""
        return ", ".join(f"{c}={'null' if v is None else v}" for c, v in zip(self.columns, self.values))


@dataclass(frozen=True)
class EvaluateResult:
    run_id: str
    split: str
    rows: int
    auc: float
    accuracy: float
    log_loss: float
    reference_auc: float | None
    table: str
    seconds: float
    metrics: BinaryMetrics
    plots: dict[str, str]
    ams: Significance | None = None
    slices: list[SliceMetrics] = field(default_factory=list)
    title: str = ""  # what the plots show: model, run, split


def latest_run_id(spark: SparkSession, table: str) -> str:
    row = spark.table(table).groupBy("run_id").agg(F.max("scored_at").alias("t")).orderBy(F.desc("t")).first()
    if row is None:
        raise PipelineError(f"predictions table {table} has no runs: run `dlpipe infer` first")
    return row["run_id"]


def scored_run(spark: SparkSession, cfg: Config, run_id: str | None) -> str:
    """The run whose predictions are evaluated: ``run_id``, or the latest run in the predictions table."""
    predictions_table = cfg.qualified(cfg.infer.output_table)
    if not spark.catalog.tableExists(predictions_table):
        raise PipelineError(f"predictions table {predictions_table} does not exist: run `dlpipe infer` first")
    return check_run_id(run_id) if run_id else latest_run_id(spark, predictions_table)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> EvaluateResult:
    started = time.time()
    ec, fc = cfg.evaluate, cfg.featurize
    predictions_table = cfg.qualified(cfg.infer.output_table)
    run_id = scored_run(spark, cfg, run_id)
    predictions = spark.table(predictions_table).where(F.col("run_id") == run_id)
    first = predictions.select("model_name", "model_version", "feature_version").first()
    if first is None:
        raise PipelineError(f"predictions table {predictions_table} has no rows for run {run_id}")
    artifact = load_artifact(cfg, fc.output_table, first["feature_version"])
    split_cfg = artifact["split"]
    label_spec = FeatureSpec.from_json(artifact["spec"]).label
    key = split_cfg["key"]
    if key is None:
        raise PipelineError("evaluate joins predictions to labels by featurize.key: set featurize.key to an id column")

    weight = cfg.train.sample_weight
    raw = read_source(spark, cfg, cfg.infer.input)
    sliced_by = [c for spec in ec.slice_columns for c in spec]
    label_columns = list(dict.fromkeys(
        [key, label_spec.column] + [c for c in (ec.reference_column, weight, ec.event_weight) if c] + sliced_by))
    missing = [c for c in label_columns if c not in raw.columns]
    if missing and missing[0] in sliced_by:
        raise PipelineError(f"evaluate.slices names column {missing[0]!r}, which {cfg.infer.input.describe()} does not "
                            f"have (its columns: {', '.join(raw.columns)}): fix evaluate.slices")
    if missing:
        raise PipelineError(f"evaluate needs column {missing[0]!r} in {cfg.infer.input.describe()}; it has no labels to compare with")
    labelled = assign_split(raw.select(*label_columns), key, split_cfg["train"], split_cfg["validation"], split_cfg["seed"])
    labelled = labelled.withColumn(
        LABEL, encoded_label(label_spec, raw.schema[label_spec.column].dataType).cast("double")
    ).where(F.col(LABEL).isNotNull())
    for column in (weight, ec.event_weight):
        if column:
            labelled = labelled.where(F.col(column).isNotNull())
    in_split = labelled.where(F.col("split") == ec.split)
    check_unique_key(in_split, key, ec.split, cfg.infer.input.describe())
    joined = predictions.select(key, "score").join(in_split, key).cache()
    try:
        if joined.isEmpty():
            raise PipelineError(f"run {run_id} has no labelled predictions in the {ec.split} split to evaluate")
        threshold = cfg.infer.threshold
        if threshold == "auto":  # the one the model's training picked, with which infer predicted
            threshold = decision_threshold(cfg, load_model_metadata(cfg, first["model_name"], first["model_version"])[0])
        metrics, by_slice = sliced_binary_metrics(
            joined, "score", LABEL, threshold, weight,
            {", ".join(spec): [F.col(c) for c in spec] for spec in ec.slice_columns}, ec.max_slices)
        reference = binary_metrics(joined, ec.reference_column, LABEL, threshold, weight) if ec.reference_column else None
        events = (binary_metrics(joined, "score", LABEL, threshold, ec.event_weight) if ec.event_weight
                  else None)
    finally:
        joined.unpersist()

    folder = cfg.outputs_path / "evaluations" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    model = f"{first['model_name']} {first['model_version']}"
    title = f"{model}, run {run_id}, {ec.split} split"
    curves = {model: metrics.histogram, **({ec.reference_column: reference.histogram} if reference else {})}
    plots = {
        "roc": save_roc_curve(curves, folder / "roc.png", f"ROC: {title}"),
        "scores": save_score_distributions(metrics.histogram, folder / "scores.png", f"scores: {title}", threshold,
                                           class_names(label_spec, physics=ec.event_weight is not None)),
        "calibration": save_calibration(metrics.histogram, folder / "calibration.png", f"calibration: {title}"),
    }
    significance = None
    if events is not None:
        significance = best_significance(labelled, ec.event_weight, events)
        thresholds, values = events.histogram.ams_scan(significance.signal_scale, significance.background_scale)
        plots["ams"] = save_ams(thresholds, values, folder / "ams.png", f"AMS: {title}",
                                (significance.value, significance.threshold))
    reference_auc = reference.auc if reference else None
    slices = slice_results(ec.slice_columns, by_slice, metrics.auc, ec.slice_auc_margin)
    metrics_table = cfg.qualified(ec.metrics_table)
    evaluated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    model_cells = (run_id, first["model_name"], first["model_version"], ec.split)

    def cells(m: BinaryMetrics) -> tuple:
        return (m.rows, weight, m.weight, None if math.isnan(m.auc) else m.auc, m.accuracy, m.log_loss, threshold,
                m.true_positives, m.false_positives, m.true_negatives, m.false_negatives, m.precision, m.recall)

    rows = [(*model_cells, *cells(metrics), reference_auc, ec.event_weight,
             significance.value if significance else None, significance.threshold if significance else None,
             str(folder), evaluated_at, None, None, None)]
    rows += [(*model_cells, *cells(sl.metrics), None, None, None, None, None, evaluated_at, ", ".join(sl.columns),
              sl.label, sl.flagged) for sl in slices]
    # the run's rows replace an earlier evaluation of the same run
    replace_run_rows(spark, spark.createDataFrame(rows, METRICS_SCHEMA), metrics_table, run_id)
    result = EvaluateResult(run_id, ec.split, metrics.rows, metrics.auc, metrics.accuracy, metrics.log_loss,
                            reference_auc, metrics_table, time.time() - started, metrics,
                            {k: str(v) for k, v in plots.items()}, significance, slices, title)
    print(summary(result, ec.reference_column, weight, ec.slice_auc_margin))
    return result


def class_names(label: LabelSpec, physics: bool = False) -> tuple[str, str]:
    """How the plots name the negative and the positive class: by the label spec's values (``delayed = yes``,
    ``label = 1``), as signal and background only for a physics sample (``evaluate.event_weight``)."""
    positive = "1" if label.positive is None else label.positive
    negative = ("0" if label.positive is None else f"not {label.positive}") if label.negative is None else label.negative
    names = (f"{label.column} = {negative}", f"{label.column} = {positive}")
    return (f"{names[0]} (background)", f"{names[1]} (signal)") if physics else names


def slice_results(specs: tuple[tuple[str, ...], ...], found: dict[str, dict[str, BinaryMetrics]], overall_auc: float,
                  margin: float) -> list[SliceMetrics]:
    """Each kept slice with its values read back from its key, flagged when its AUC is more than ``margin`` below
    the overall AUC (a slice of one class has no AUC and is not flagged)."""
    out = []
    for spec in specs:
        for key, metrics in found[", ".join(spec)].items():
            values = json.loads(key)  # to_json leaves null fields out
            flagged = not math.isnan(metrics.auc) and metrics.auc < overall_auc - margin
            out.append(SliceMetrics(spec, tuple(values.get(c) for c in spec), metrics, flagged))
    return out


def best_significance(labelled: DataFrame, column: str, events: BinaryMetrics) -> Significance:
    """The best AMS of ``events`` (the evaluated rows' metrics weighted by ``column``), each class's weights
    scaled to its total over every labelled row (all splits): s and b are what the whole sample would give."""
    totals = {row[LABEL]: row["w"] for row in labelled.groupBy(LABEL).agg(F.sum(column).alias("w")).collect()}
    histogram = events.histogram
    scale = lambda total, part: total / part if part > 0 else 1.0  # noqa: E731
    signal = scale(totals.get(1.0, 0.0), float(histogram.positives.sum()))
    background = scale(totals.get(0.0, 0.0), float(histogram.negatives.sum()))
    value, threshold = histogram.best_ams(signal, background)
    return Significance(value, threshold, column, signal, background)


def summary(result: EvaluateResult, reference_column: str | None, weight: str | None, margin: float = 0.05) -> str:
    m = result.metrics
    reference = (f" (best achievable, from {reference_column}: {result.reference_auc:.4f})"
                 if result.reference_auc is not None else "")
    weighted = f", weighted by {weight} (total {m.weight:,.1f})" if weight else ""
    return (
        f"evaluate: run {result.run_id} on {result.rows:,} {result.split} rows{weighted}: AUC {result.auc:.4f}"
        f"{reference}, accuracy {result.accuracy:.4f}, log loss {result.log_loss:.4f} -> {result.table}\n"
        f"  at threshold {m.threshold:g}: true positives {m.true_positives:,.0f}, false positives "
        f"{m.false_positives:,.0f}, true negatives {m.true_negatives:,.0f}, false negatives {m.false_negatives:,.0f}\n"
        f"{ams_line(result.ams)}"
        f"{slices_lines(result, margin)}"
        f"  plots: {Path(result.plots['roc']).parent}/{{{','.join(result.plots)}}}.png"
    )


def slices_lines(result: EvaluateResult, margin: float, shown: int = 5) -> str:
    """How many slices were evaluated, and the flagged ones, worst first."""
    if not result.slices:
        return ""
    specs = list(dict.fromkeys(", ".join(s.columns) for s in result.slices))
    counts = ", ".join(f"{sum(1 for s in result.slices if ', '.join(s.columns) == spec)} of {spec}" for spec in specs)
    flagged = sorted((s for s in result.slices if s.flagged), key=lambda s: s.metrics.auc)
    head = f"  slices: {counts}; AUC more than {margin:g} below the overall {result.auc:.4f}: "
    if not flagged:
        return head + "none\n"
    listed = "; ".join(f"{s.label} {s.metrics.auc:.4f} ({s.metrics.rows:,} rows)" for s in flagged[:shown])
    more = f"; {len(flagged) - shown} more" if len(flagged) > shown else ""
    return head + listed + more + "\n"


def ams_line(significance: Significance | None) -> str:
    if significance is None:
        return ""
    return (f"  AMS (event weights {significance.column}, b_r {B_REG:g}, scaled to the whole input): "
            f"{significance.value:.4f} at score >= {significance.threshold:.4f}\n")


# --------------------------------------------------------------------------------------------- the stage


def predictions_run(ctx: StageContext) -> str | None:
    """The run to evaluate: the one whose predictions this run wrote or was given; in ``dlpipe run`` otherwise the
    run itself; alone, otherwise the latest (None)."""
    return ctx.handoff.get("predictions_run") or (None if ctx.alone else ctx.run_id)


def planned_run(ctx: StageContext) -> str | None:
    """The run the plan resolved (alone and not given one: the latest, looked up once), else ``predictions_run``."""
    planned = ctx.plan.document.get("predictions", {}).get("run_id") if ctx.plan else None
    return planned or predictions_run(ctx)


def check_unique_key(rows: DataFrame, key: str, split: str, source: str) -> None:
    """Refuse a key that names several rows: the join to the predictions would pair every copy with every score."""
    shared = rows.groupBy(key).count().where(F.col("count") > 1).agg(
        F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows")).first()
    if shared["keys"]:
        raise PipelineError(
            f"featurize.key {key!r} is not unique in {source}: {shared['keys']:,} keys of the {split} split name "
            f"{shared['rows']:,} rows; evaluate joins predictions to labels by it: make featurize.key an id column "
            "that names one row")


def plan(spark: SparkSession, cfg: Config, ctx: StageContext) -> StagePlan:
    predictions = cfg.qualified(cfg.infer.output_table)
    scored = predictions_run(ctx) or scored_run(spark, cfg, None)  # alone and not given one: the latest
    entry, identity = source_input(spark, cfg, cfg.infer.input)
    return StagePlan("evaluate", [{"kind": "table", "name": predictions, "run_id": scored}, entry], {
        "evaluate": section(cfg.evaluate), "threshold": cfg.infer.threshold, "weight": cfg.train.sample_weight,
        "predictions": {"table": predictions, "run_id": scored}, "labels": identity,
        "table": cfg.qualified(cfg.evaluate.metrics_table),
    })


def outputs(cfg: Config, result: EvaluateResult) -> StageOutputs:
    metrics = {"auc": result.auc, "accuracy": result.accuracy, "log_loss": result.log_loss}
    if result.reference_auc is not None:
        metrics["reference_auc"] = result.reference_auc
    if result.ams is not None:
        metrics["ams"] = result.ams.value
    sliced = []
    if result.slices:
        metrics["flagged_slices"] = float(sum(s.flagged for s in result.slices))
        sliced.append({"kind": "slices", "name": result.table, "run_id": result.run_id,
                       "margin": cfg.evaluate.slice_auc_margin, "slices": [
            {"columns": ", ".join(s.columns), "values": s.label, "rows": s.metrics.rows,
             "auc": None if math.isnan(s.metrics.auc) else s.metrics.auc, "accuracy": s.metrics.accuracy,
             "log_loss": s.metrics.log_loss, "flagged": s.flagged} for s in result.slices]})
    return StageOutputs([{"kind": "table", "role": "metrics", "name": result.table, "run_id": result.run_id},
                         {"kind": "plots", "name": "evaluation", "run_id": result.run_id, **result.plots,
                          "title": result.title}, *sliced],
                        result.rows, metrics)


STAGE = Stage(
    name="evaluate",
    help="join a run's predictions to the labels and write AUC, accuracy and log loss to the metrics table",
    plan=plan,
    run=lambda spark, cfg, ctx: run(spark, cfg, run_id=planned_run(ctx)),
    outputs=outputs,
    key_metrics=("auc",),
    run_id_names="predictions_run",
)
