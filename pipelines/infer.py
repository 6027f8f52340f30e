"""Stage ``infer``: featurize the input with the model's own artifact, score it in Spark's Python workers through
Arrow (``mapInArrow``), and write the run's rows to the Delta predictions table.

Reads ``infer.input`` and a model of ``train.model_name`` (the latest, or ``infer.model_version``) with the
feature artifact it was trained on; writes to the Delta table ``infer.output_table``, partitioned by
``infer.partition_by``. Re-running a run id replaces exactly that run's rows, in one Delta commit: a reader sees
the old rows or the new ones, never both and never a part. See docs/predictions.md for what concurrent
runs may do.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from delta.exceptions.captured import (ConcurrentAppendException, ConcurrentDeleteDeleteException,
                                       ConcurrentDeleteReadException, ConcurrentTransactionException,
                                       ConcurrentWriteException, MetadataChangedException, ProtocolChangedException)
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.features.apply import apply_features, missing_flag_column, out_of_vocabulary_flag_column, scorer_input
from dlpipe.features.errors import FeatureError
from dlpipe.features.expressions import numeric_value
from dlpipe.features.fitted import FittedFeatures
from dlpipe.features.schema import FeatureSchema
from dlpipe.features.tally import Tally, accumulator, feature_space, missing_words
from dlpipe.models.scoring import SCORE, make_batch_scorer
from dlpipe.pipelines import drift, registry
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.config.schema import PREDICTION_COLUMNS, DriftConfig
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.run_id import check_run_id, new_run_id
from dlpipe.pipelines.stage import Stage, StageContext, StageOutputs, StagePlan, section, source_input
from dlpipe.pipelines.store import artifact_digest, decision_threshold, load_artifact, load_model_metadata
from dlpipe.pipelines.tables import marked_commit, read_source, table_version
from dlpipe.spark_settings import spark_settings

WRITE_ATTEMPTS = 3  # a commit that lost a race with a concurrent run into the same partition is retried
# Delta's commit conflicts (another writer committed what this commit read, so writing again on the new version
# may succeed). Importing delta.exceptions.captured makes PySpark raise them as these types; without that import
# they stay a Py4JJavaError.
CONFLICTS = (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentDeleteDeleteException,
             ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException,
             ProtocolChangedException)


@dataclass(frozen=True)
class InferResult:
    table: str
    table_version: int | None  # None: nothing was written (empty input)
    run_id: str
    run_date: dt.date
    rows: int
    seconds: float
    missing: dict[str, int] = field(default_factory=dict)             # numeric column -> values filled by policy
    out_of_vocabulary: dict[str, int] = field(default_factory=dict)   # categorical column -> rows given id 0
    predicted_positive: int = 0                                       # rows with predicted_label 1
    mean_score: float | None = None
    drift: list[drift.Measure] = field(default_factory=list)         # empty: drift not measured
    drift_distributions: dict[str, dict] = field(default_factory=dict)  # the most drifted, for the report
    drift_sample: tuple[int, int] | None = None                       # (rows profiled, rows) when sampled


@dataclass(frozen=True)
class ScoringModel:
    """A saved model and the feature artifact it was trained on, checked against each other."""

    name: str
    version: str
    path: Path
    fitted: FittedFeatures
    feature_version: str
    feature_table: str
    threshold: float  # predicted_label is score >= threshold (store.decision_threshold)


def scoring_model(cfg: Config) -> ScoringModel:
    """The model ``infer`` scores with and its artifact; refuses an artifact from another featurize run."""
    ic = cfg.infer
    meta, folder = load_model_metadata(cfg, cfg.train.model_name, ic.model_version)
    name, version = meta["model_name"], meta["model_version"]
    path = folder / meta["model_file"]
    if not path.is_file():
        raise PipelineError(f"model {name} {version} has no model file {path}: the model folder is incomplete; "
                            "train again or set infer.model_version to another version")
    ref = meta["feature_artifact"]
    if ic.feature_version is not None and ic.feature_version != ref["version"]:
        raise PipelineError(
            f"model {name} {version} was trained on feature artifact {ref['table']}/{ref['version']}, and "
            f"infer.feature_version asks for {ic.feature_version}: another artifact encodes the features differently. "
            "Unset infer.feature_version, or train a model on that artifact"
        )
    artifact = load_artifact(cfg, ref["table"], ref["version"])
    if "sha256" in ref and artifact_digest(artifact) != ref["sha256"]:
        raise PipelineError(
            f"feature artifact {ref['table']}/{ref['version']} is not the one model {name} {version} was trained on "
            "(same version, other content: it comes from another featurize run). Train the model again on this "
            "artifact, or restore the artifact the model was trained with"
        )
    fitted = FittedFeatures.from_json(artifact)
    differences = schema_differences(FeatureSchema.from_json(meta["feature_schema"]), fitted.schema)
    if differences:
        raise PipelineError(f"feature artifact {ref['table']}/{ref['version']} produces other inputs than model "
                            f"{name} {version} expects: " + "; ".join(differences))
    return ScoringModel(name, version, path, fitted, ref["version"], ref["table"], decision_threshold(cfg, meta))


def schema_differences(expected: FeatureSchema, actual: FeatureSchema) -> list[str]:
    """The model inputs that differ between two feature schemas, by name, in model order."""
    want = {c.name: c for c in expected.features}
    have = {c.name: c for c in actual.features}
    out = [f"{n} is missing" for n in want if n not in have]
    out += [f"{n} is not a model input" for n in have if n not in want]
    out += [f"{n} is {have[n].dtype}{list(have[n].shape)} (cardinality {have[n].cardinality}), the model expects "
            f"{want[n].dtype}{list(want[n].shape)} (cardinality {want[n].cardinality})"
            for n in want if n in have and have[n] != want[n]]
    if not out and expected.feature_columns != actual.feature_columns:
        out.append(f"the inputs are in another order: {list(actual.feature_columns)}, the model expects "
                   f"{list(expected.feature_columns)}")
    return out


def reject_missing(raw: DataFrame, fitted: FittedFeatures, source: str) -> None:
    """Count the missing values of columns whose policy is ``reject`` and fail, with the counts, if there are any."""
    rejecting = [f for f in fitted.spec.numeric if f.missing == "reject"]
    if not rejecting:
        return
    counts = raw.agg(*[F.count(F.when(numeric_value(f).isNull(), 1)).alias(f.column) for f in rejecting]).first()
    found = [f"{f.column}: {counts[f.column]:,}" for f in rejecting if counts[f.column]]
    if found:
        raise PipelineError(
            f"{source} has missing values (null, NaN or infinite) in columns whose missing-value policy is reject "
            f"({', '.join(found)}): nothing was scored. Clean the input, or fit the artifact with another policy"
        )


def spread(raw: DataFrame, slots: int) -> DataFrame:
    """``raw`` in at least ``slots`` partitions, so that every task slot scores (a one-file input is one task)."""
    return raw if raw.rdd.getNumPartitions() >= slots else raw.repartition(slots)


def score_features(features: DataFrame, model: ScoringModel, carried: tuple[str, ...],
                   tally: DriftTally | None = None) -> DataFrame:
    """The ``carried`` columns of featurized rows and the model's float32 ``score``. The rows go to the Python
    workers as Arrow batches (``mapInArrow``, ``infer.batch_size`` rows each: see ``scoring_batches``) with the
    dense features packed in one list column, which the workers read as one flat buffer (``models.scoring``). With
    Spark's byte limit per batch checked after every row, one list column of 38 floats went over in 1.25 s per
    million rows here and 38 float columns in 1.84 s; without that check (``scoring_batches``) both take 0.9-1.0 s.
    With ``tally``, the batches are counted into the drift profile before scoring (with the missing flags
    ``features.tally.missing_words``, which ``features`` then carries)."""
    schema = model.fitted.schema
    scorer = make_batch_scorer(str(model.path), schema, carried)
    counted = ()
    if tally is not None:
        scorer, counted = tally.counting(scorer), tally.space.words
    return scorer_input(features, schema, (*carried, *counted)).mapInArrow(
        scorer, T.StructType([*(features.schema[c] for c in carried), T.StructField(SCORE, T.FloatType(), False)]),
    )


def kept_column(column: str) -> str:
    """The name an ``infer.keep`` column travels under through featurizing and scoring, where the features may
    have its own name (a categorical feature's encoding does)."""
    return f"__keep__{column}"


def check_keep(keep: tuple[str, ...], raw: DataFrame, source: str) -> None:
    """Fail before scoring if an ``infer.keep`` column is not in the input or takes a predictions column's name."""
    for column in keep:
        if column in PREDICTION_COLUMNS:
            raise PipelineError(f"infer.keep names {column!r}, a column infer writes itself: remove it from "
                                "infer.keep, or rename it in the input")
        if column not in raw.columns:
            raise PipelineError(f"infer.keep names column {column!r}, which {source} does not have (its columns: "
                                f"{', '.join(raw.columns)}): remove it from infer.keep")


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, run_date: dt.date | None = None,
        alias: str | None = None) -> InferResult:
    """Score ``infer.input``; ``alias``: the model alias a stage's plan resolved to ``infer.model_version``."""
    started = time.time()
    ic = cfg.infer
    run_id = check_run_id(run_id or new_run_id())
    table = cfg.qualified(ic.output_table)
    wanted = ic.model_version
    cfg = with_model_version(cfg, registry.resolve(spark, cfg, cfg.train.model_name, wanted))
    model = scoring_model(cfg)
    alias = alias or (wanted if wanted and wanted != model.version else None)
    schema = model.fitted.schema
    source = ic.input.describe()
    raw = read_source(spark, cfg, ic.input)
    input_version = table_version(spark, cfg, ic.input)
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    run_date = run_date or scored_at.date()

    if raw.isEmpty():
        if ic.on_empty == "fail":
            raise PipelineError(f"{source} has no rows to score (infer.on_empty: fail)")
        print(f"infer: {source} has no rows: nothing scored, {table} left as it is (infer.on_empty: skip)")
        return InferResult(table, None, run_id, run_date, 0, time.time() - started)
    reject_missing(raw, model.fitted, source)
    # The label is written beside the score when the input has it (evaluate reads it from the input); scoring
    # never needs it. The kept columns come after it, each once.
    labelled = schema.label in raw.columns
    carried = tuple(dict.fromkeys([*schema.passthrough, *([schema.label] if labelled else [])]))
    keep = tuple(c for c in dict.fromkeys(ic.keep) if c not in (*schema.passthrough, schema.label))
    check_keep(keep, raw, source)
    raw = raw.select("*", *(F.col(c).alias(kept_column(c)) for c in keep))
    # an input without a feature column gets apply_features' one-line error, not the profile's
    complete = all(c in raw.columns for c in (*model.fitted.spec.feature_input_columns, *schema.passthrough))
    tally = drift_tally(spark, model, ic.drift) if complete else None
    if tally:
        tally.draw_from(raw)

    try:
        features = apply_features(spread(raw, spark.sparkContext.defaultParallelism), model.fitted,
                                  keep=tuple(kept_column(c) for c in keep),
                                  extra=tuple(missing_words(model.fitted.spec)) if tally else (), source=source,
                                  artifact=f"feature artifact {model.feature_table}/{model.feature_version}", flags=True)
        schema.check(features, f"the featurized {source}", label=labelled)
    except FeatureError as err:
        raise PipelineError(f"{err}; nothing was scored") from None
    quality = Observation("infer_input")
    features = features.observe(
        quality,
        *[F.count(F.when(F.col(missing_flag_column(f.column)), 1)).alias(f"missing:{f.column}")
          for f in model.fitted.spec.numeric],
        *[F.count(F.when(F.col(out_of_vocabulary_flag_column(f.column)), 1)).alias(f"oov:{f.column}")
          for f in model.fitted.spec.categorical],
    )
    predictions = score_features(features, model, (*carried, *(kept_column(c) for c in keep)), tally).select(
        *carried,
        *(F.col(kept_column(c)).alias(c) for c in keep),
        F.col(SCORE),
        (F.col(SCORE) >= F.lit(model.threshold)).cast("int").alias("predicted_label"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).alias("model_version"),
        F.lit(model.feature_version).alias("feature_version"),
        F.lit(input_version).cast("long").alias("input_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(run_date).cast("date").alias("run_date"),
    )
    scores = Observation("infer_scores")  # counted as the rows are written: no second pass
    predictions = predictions.observe(scores, F.sum("predicted_label").alias("positive"), F.avg(SCORE).alias("mean"))
    partitions = {"run_date": run_date, "model_name": model.name, "model_version": model.version}
    with spark_settings(spark, scoring_batches(ic.batch_size)):
        version, rows = write_run(spark, predictions, table, run_id, {c: partitions[c] for c in ic.partition_by},
                                  before_each=lambda: tally and tally.reset())

    counts = quality.get
    missing = {f.column: counts[f"missing:{f.column}"] for f in model.fitted.spec.numeric}
    outside = {f.column: counts[f"oov:{f.column}"] for f in model.fitted.spec.categorical}
    scored = scores.get
    measures, distributions = compare_with_training(spark, cfg, model, tally, run_id, run_date, scored_at)
    result = InferResult(table, version, run_id, run_date, rows, time.time() - started, missing, outside,
                         int(scored["positive"] or 0), scored["mean"], measures, distributions,
                         tally.sample if tally else None)
    print(summary(result, model, source, input_version, ic.threshold, alias))
    if ic.drift.enabled:
        print(drift_summary(result, model, cfg))
    failing = drift.alerts(measures)
    if failing and ic.drift.fail:
        raise PipelineError(f"drift: {drift.plural(len({m.feature for m in failing}), 'feature')} crossed their "
                            f"thresholds (infer.drift.fail is true); the predictions of run {run_id} are written, see "
                            f"{cfg.qualified(ic.drift.table)} for the statistics")
    return result


def summary(result: InferResult, model: ScoringModel, source: str, input_version: int | None,
            asked: float | str, alias: str | None = None) -> str:
    at = f" (Delta version {input_version})" if input_version is not None else ""
    named = f" (alias {alias})" if alias else ""
    lines = [f"infer: scored {result.rows:,} rows of {source}{at} with {model.name} {model.version}{named} (features "
             f"{model.feature_version}) into {result.table} (run {result.run_id}, run_date {result.run_date}, "
             f"Delta version {result.table_version}) in {result.seconds:.1f}s",
             f"  predicted_label 1 (score >= {model.threshold:g}{' (auto)' if asked == 'auto' else ''}): "
             f"{result.predicted_positive:,} rows "
             f"({result.predicted_positive / max(result.rows, 1):.1%}); mean score {result.mean_score or 0:.4f}"]
    if any(result.missing.values()):
        lines.append("  missing numeric values, filled by the fitted policy: " + counted(result.missing))
    if result.out_of_vocabulary:
        lines.append("  categorical values outside the vocabulary (unseen in training or too rare), scored through "
                     "the reserved id 0: " + counted(result.out_of_vocabulary))
    return "\n".join(lines)


def counted(per_column: dict[str, int], shown: int = 5) -> str:
    """``1,234 (a 700, b 534, c 0)``: the total, then the columns with the most, at most ``shown`` of them."""
    top = sorted(per_column.items(), key=lambda item: -item[1])
    text = ", ".join(f"{c} {n:,}" for c, n in top[:shown])
    more = f", {len(top) - shown} more columns" if len(top) > shown else ""
    return f"{sum(per_column.values()):,} ({text}{more})"


NO_BYTE_LIMIT = str(2**31 - 1)  # maxBytesPerBatch at Int.MaxValue: Spark reads it as "no limit"


def scoring_batches(rows: int) -> dict[str, str]:
    """Session settings for a scoring job: ``rows`` per Arrow batch handed to the Python workers, and no byte limit
    on a batch.

    Spark 4.0 checks the byte limit after every row it adds to a batch, by asking each of the batch's Arrow vectors
    its size; the row count already bounds a batch (10,000 rows of the demo's features are 2 MB). Without the
    check the handoff of 1M featurized rows to the Python workers took 0.95 s instead of 1.3 s here, and the whole
    scoring job 1.53 s instead of 1.73 s (medians of 6).
    """
    return {"spark.sql.execution.arrow.maxRecordsPerBatch": str(rows),
            "spark.sql.execution.arrow.maxBytesPerBatch": NO_BYTE_LIMIT}


# --------------------------------------------------------------------------------------------- drift


class DriftTally:
    """The scored input's drift profile, counted in the scoring job from the rows the scorer receives: each task
    tallies the batches it scores (``features.tally.Tally``) and Spark merges the tallies of successful tasks, each
    task once, as an accumulator."""

    def __init__(self, spark: SparkSession, fitted: FittedFeatures, sample_rows: int) -> None:
        self.bins, self.sample_rows = fitted.profile_bins, sample_rows
        self.space = feature_space(spark, fitted, self.bins)
        self.total = accumulator(spark.sparkContext, self.space, self.bins)
        self.rows, self.share = 0, 1.0

    @property
    def sample(self) -> tuple[int, int] | None:
        """(rows profiled, rows scored) when the profile is a sample's; None when it is every row's."""
        profiled = self.total.value.rows
        return (profiled, self.rows) if profiled < self.rows else None

    def draw_from(self, raw: DataFrame) -> None:
        """Profile ``raw``'s rows: all of them up to ``sample_rows``, else a uniform sample of about that many (the
        distribution statistics do not need more: see docs/drift.md). Counting a Delta table reads its log, not
        its rows."""
        self.rows = raw.count()
        self.share = min(1.0, self.sample_rows / max(self.rows, 1))

    def reset(self) -> None:
        """Before a write is tried again (a lost commit race): its job counts every row again."""
        self.total.value = Tally(self.space, self.bins)

    def counting(self, scorer):
        """``scorer`` (a ``mapInArrow`` function) that first counts each batch (its sampled rows)."""
        space, bins, share, total = self.space, self.bins, self.share, self.total

        def score(batches):
            tally = Tally(space, bins, share)

            def counted():
                for batch in batches:
                    tally.add(batch)
                    yield batch

            yield from scorer(counted())
            total.add(tally)
        return score


def drift_tally(spark: SparkSession, model: ScoringModel, settings: DriftConfig) -> DriftTally | None:
    """Where the scored input's drift profile is counted, or None: drift is off, or the artifact has no training
    profile to compare with."""
    if not settings.enabled or model.fitted.training_profile is None:
        return None
    profiled = [f.column for f in (*model.fitted.spec.numeric, *model.fitted.spec.categorical)]
    unknown = sorted(set(settings.features) - set(profiled))
    if unknown:
        raise PipelineError(f"infer.drift.features names {', '.join(unknown)}, which feature artifact "
                            f"{model.feature_table}/{model.feature_version} does not compare (its numeric and "
                            f"categorical features: {', '.join(profiled)}): fix the name")
    return DriftTally(spark, model.fitted, settings.sample_rows)


def compare_with_training(spark: SparkSession, cfg: Config, model: ScoringModel, tally: DriftTally | None,
                          run_id: str, run_date: dt.date, scored_at: dt.datetime) -> tuple[list, dict[str, dict]]:
    """The drift measures of the scored input (``pipelines.drift``), written to the drift table, and the
    distributions of the most drifted features (the report plots them)."""
    if tally is None:
        return [], {}
    fitted = model.fitted
    bins, training = fitted.profile_bins, fitted.training_profile.counts
    scored = tally.total.value.profile()
    measures = drift.measure(bins, training, scored, cfg.infer.drift)
    drift.write_table(spark, cfg.qualified(cfg.infer.drift.table), measures, run_id, run_date, scored_at,
                      (model.name, model.version, model.feature_version))
    return measures, drift.distributions(bins, training, scored, drift.most_drifted(measures))


def drift_summary(result: InferResult, model: ScoringModel, cfg: Config) -> str:
    if model.fitted.training_profile is None:
        return (f"  drift: not measured: feature artifact {model.feature_table}/{model.feature_version} has no "
                "training profile (it was fitted before dlpipe measured drift); featurize again to measure it")
    return drift.summary(result.drift, cfg.qualified(cfg.infer.drift.table), result.run_id, result.drift_sample)


# --------------------------------------------------------------------------------------------- writing


def write_run(spark: SparkSession, predictions: DataFrame, table: str, run_id: str,
              partition: dict[str, object], before_each: Callable[[], object] = lambda: None) -> tuple[int, int]:
    """Replace the rows of ``run_id`` in ``table`` with ``predictions``, whose rows all have the ``partition``
    values (column -> value, in partitioning order), in one Delta commit; returns (version, rows). Columns new to
    the table (a kept column, the label of a first labelled input) are added to it; a column the rows lack (the
    label of an input without one) is null in them."""
    create_table(spark, table, predictions.schema, tuple(partition))
    predicate = replace_predicate(spark, table, run_id, partition)
    marker = f"dlpipe {run_id} {uuid.uuid4().hex}"  # finds this commit among concurrent ones
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        before_each()
        try:
            (predictions.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
             .option("mergeSchema", "true").option("userMetadata", marker).saveAsTable(table))
            break
        except CONFLICTS as err:
            conflict = type(err).__name__
            if attempt == WRITE_ATTEMPTS:
                raise PipelineError(f"writing run {run_id} to {table} lost {WRITE_ATTEMPTS} races with concurrent "
                                    f"writers ({conflict}); run it again") from None
            print(f"infer: a concurrent run changed {table} while this one wrote ({conflict}); writing again")
        except Exception as err:  # noqa: BLE001 - Delta raises a schema mismatch under more than one type
            if "schema mismatch" in str(err).lower() or "DELTA_FAILED_TO_MERGE_FIELDS" in str(err):
                raise PipelineError(
                    f"predictions table {table} has a column of another type than this run's rows (a key or kept "
                    "column whose type changed?): set infer.output_table to a new table, or drop the old one") from None
            raise
    version, metrics = marked_commit(spark, table, marker)
    return version, int(metrics.get("numOutputRows", 0))


def create_table(spark: SparkSession, table: str, schema: T.StructType, partition_by: tuple[str, ...]) -> None:
    """Create the empty predictions table if it is missing (its first writers may race: one creates it); check
    the partitioning of an existing one."""
    if not spark.catalog.tableExists(table):
        try:
            (spark.createDataFrame([], schema).write.format("delta").partitionBy(*partition_by)
             .mode("ignore").saveAsTable(table))
        except Exception:
            if not spark.catalog.tableExists(table):
                raise
    existing = spark.sql(f"DESCRIBE DETAIL {table}").first()["partitionColumns"]
    if list(existing) != list(partition_by):
        raise PipelineError(f"predictions table {table} is partitioned by {list(existing)}, and infer.partition_by "
                            f"is {list(partition_by)}: set it back, or write to a new infer.output_table")


def replace_predicate(spark: SparkSession, table: str, run_id: str, partition: dict[str, object]) -> str:
    """The rows a run's write replaces: those of its run id, within the partitions it writes now or wrote before.

    Naming the partitions matters for concurrency: Delta checks a commit against concurrent ones by the partitions
    its predicate reads, so runs that write different partitions (two run dates, say) commit side by side.
    """
    clauses = [f"run_id = {sql_literal(run_id)}"]
    if partition:
        earlier = spark.table(table).where(F.col("run_id") == run_id).select(*partition).distinct().collect()
        values = {tuple(row) for row in earlier} | {tuple(partition.values())}
        for i, column in enumerate(partition):
            listed = ", ".join(sorted({sql_literal(v[i]) for v in values}))
            clauses.append(f"{column} IN ({listed})")
    return " AND ".join(clauses)


def sql_literal(value) -> str:
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------------------------- the stage


def with_model_version(cfg: Config, version: str | None) -> Config:
    return dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, model_version=version)) if version else cfg


def with_model_of_run(cfg: Config, ctx: StageContext) -> Config:
    """The config with ``infer.model_version`` set to the model this run trained, if it trained (or reused) one;
    else to the version the stage's plan resolved (an alias, when the stage started)."""
    planned = (ctx.plan.document.get("model") or {}).get("version") if ctx.plan else None
    return with_model_version(cfg, ctx.handoff.get("model_version") or planned)


def plan(spark: SparkSession, cfg: Config, ctx: StageContext) -> StagePlan:
    cfg = with_model_of_run(cfg, ctx)
    wanted = cfg.infer.model_version
    version = registry.resolve(spark, cfg, cfg.train.model_name, wanted)
    metadata, _ = load_model_metadata(cfg, cfg.train.model_name, version)
    entry, identity = source_input(spark, cfg, cfg.infer.input)
    artifact = metadata["feature_artifact"]
    model = {"kind": "model", "name": metadata["model_name"], "version": metadata["model_version"]}
    return StagePlan("infer", [
        model, {"kind": "artifact", "name": artifact["table"], "version": artifact["version"]}, entry,
    ], {
        "infer": {**section(cfg.infer), "model_version": metadata["model_version"]}, "model": model,
        **({"model_alias": wanted} if wanted != version else {}),
        "input": identity, "run_date": str(ctx.run_date), "table": cfg.qualified(cfg.infer.output_table),
    })


def outputs(cfg: Config, result: InferResult) -> StageOutputs:
    entry = {"kind": "table", "role": "predictions", "name": result.table, "version": result.table_version,
             "run_id": result.run_id, "rows": result.rows, "run_date": str(result.run_date), "missing": result.missing,
             "out_of_vocabulary": result.out_of_vocabulary}
    drifted = []
    if result.drift:
        shown = [*drift.most_drifted(result.drift), *(m.feature for m in drift.alerts(result.drift))]
        drifted.append({"kind": "drift", "name": cfg.qualified(cfg.infer.drift.table), "run_id": result.run_id,
                        "features": len({m.feature for m in result.drift}),
                        "measures": [m.to_json() for m in result.drift if m.feature in shown],
                        "distributions": result.drift_distributions})
    return StageOutputs([entry, *drifted], result.rows, {
        **({"drifted_features": float(len({m.feature for m in drift.alerts(result.drift)}))} if result.drift else {}),
        "missing_values": float(sum(result.missing.values())),
        "out_of_vocabulary": float(sum(result.out_of_vocabulary.values())),
        "predicted_positive": float(result.predicted_positive),
        **({"mean_score": result.mean_score} if result.mean_score is not None else {})})


def hands_on(entries: list[dict]) -> dict[str, str]:
    """The run whose predictions this stage wrote (or reused): evaluate scores them."""
    return {"predictions_run": e["run_id"] for e in entries
            if e["kind"] == "table" and e.get("role") == "predictions"}


def closing(cfg: Config, outcome, handoff: dict[str, str]) -> str | None:
    """Where the predictions are, and a query to start from."""
    run_id = handoff.get("predictions_run")
    if run_id is None:
        return None
    return (f"\npredictions of run {run_id}: {outcome.rows:,} rows, "
            f"{int(outcome.metrics.get('predicted_positive', 0)):,} with predicted_label 1; query them by name:\n"
            f"  dlpipe sql \"SELECT predicted_label, count(*), avg(score) FROM {cfg.infer.output_table} "
            f"WHERE run_id = '{run_id}' GROUP BY predicted_label\"")


STAGE = Stage(
    name="infer",
    help="score the input with the latest model through a Spark UDF into the Delta predictions table",
    plan=plan,
    run=lambda spark, cfg, ctx: run(spark, with_model_of_run(cfg, ctx), run_id=ctx.run_id, run_date=ctx.run_date,
                                    alias=ctx.plan.document.get("model_alias") if ctx.plan else None),
    outputs=outputs,
    hands_on=hands_on,
    key_metrics=("predicted_positive",),
    counts=("predicted_positive",),
    closing=closing,
)
