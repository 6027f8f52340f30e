"""Stage ``featurize``: split the input, fit the feature spec on the training split, write the feature table.

Reads ``featurize.input``; writes the Delta table ``featurize.output_table`` partitioned by ``split`` (float32
and int32 feature columns, laid out for Petastorm, see ``pipelines.layout``) and the next version of the fitted
artifact under ``<data_dir>/artifacts/<output_table>/``. Every check on the input runs before anything is written.
"""
from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from dlpipe.features.apply import apply_features
from dlpipe.features.fit import FitReport, check_input, fit_features
from dlpipe.features.fitted import FittedFeatures
from dlpipe.features.schema import SPLIT_COLUMN, FeatureSchema
from dlpipe.features.split import assign_split
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.layout import files_per_split, lay_out, row_bytes
from dlpipe.pipelines.session import training_workers
from dlpipe.pipelines.stage import Stage, StageContext, StageOutputs, StagePlan, section, source_input
from dlpipe.pipelines.store import save_artifact
from dlpipe.pipelines.tables import delta_version, read_pinned
from dlpipe.spark_settings import spark_settings


ID_LIKE_VALUES = 1000  # a categorical keeping more values than this, most seen once, is warned about


@dataclass(frozen=True)
class FeaturizeResult:
    table: str
    table_version: int
    artifact_version: str
    artifact_path: str
    report: FitReport
    files: dict[str, int]
    fitted: FittedFeatures
    seconds: float

    @property
    def rows_per_split(self) -> dict[str, int]:
        return self.report.rows


def run(spark: SparkSession, cfg: Config) -> FeaturizeResult:
    started = time.time()
    fc = cfg.featurize
    raw, identity = read_pinned(spark, cfg, fc.input)  # every pass reads the version the artifact records
    source = fc.input.describe()
    spec = fc.feature_spec()
    check_input(raw, spec, source)
    split = assign_split(raw, fc.key, fc.split.train, fc.split.validation, fc.split.seed, name=SPLIT_COLUMN)
    fitted, report = fit_features(split, spec, SPLIT_COLUMN, fc.quantile_error, source, key=fc.key)
    # Apply exactly what scoring will load: the JSON round trip keeps every float bit for bit.
    fitted = FittedFeatures.from_json(fitted.to_json())
    features = apply_features(split, fitted, keep=(SPLIT_COLUMN,), source=source, check_finite=True)
    fitted.schema.check(features, "the featurized rows")

    planned = files_per_split(report.rows, training_workers(spark, cfg), row_bytes(fitted.schema))
    features = lay_out(features, planned, fc.key, [c for c in features.columns if c != SPLIT_COLUMN],
                       input_partitions=split.rdd.getNumPartitions())
    table = cfg.qualified(fc.output_table)
    with spark_settings(spark, feature_table_settings(fitted.schema)):
        (  # a row check of apply_features that fails (an infinite value) fails the job: nothing is committed
            features.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
            .partitionBy(SPLIT_COLUMN).saveAsTable(table)
        )
    version = delta_version(spark, table)
    files = files_by_split(spark, table)  # counted in the Delta log, not taken from the plan
    artifact_version, artifact_path = save_artifact(cfg, fc.output_table, {
        **fitted.to_json(),
        "input": identity,
        "split": {"key": fc.key, "train": fc.split.train, "validation": fc.split.validation,
                  "test": fc.split.test, "seed": fc.split.seed},
        "rows_per_split": report.rows,
        "report": report.to_json(),
        "feature_table": {"name": table, "delta_version": version, "files_per_split": files},
    })
    result = FeaturizeResult(table, version, artifact_version, str(artifact_path), report, files, fitted,
                             time.time() - started)
    print(summary(result))
    return result


def files_by_split(spark: SparkSession, table: str) -> dict[str, int]:
    """Data files of the table's current version, per split (from the Delta log, not a directory listing)."""
    files = spark.table(table).inputFiles()
    return {s: sum(f"/{SPLIT_COLUMN}={s}/" in f for f in files) for s in ("train", "validation", "test")}


def feature_table_settings(schema: FeatureSchema) -> dict[str, str]:
    """Session settings for writing a feature table (each saved 10-25% of the write here):

    - Delta keeps per-file min/max statistics of the first 32 columns for data skipping. Nobody filters a feature
      table by a feature value: keep them for the id (passthrough) columns only.
    - Parquet tries a dictionary for every column and falls back for float features, whose values hardly repeat:
      dictionaries only for the ids, the label and the categorical indices.
    """
    dictionary = [*schema.passthrough, schema.label, *(c.name for c in schema.index)]
    settings = {"parquet.enable.dictionary": "false"}
    settings.update({f"parquet.enable.dictionary#{c}": "true" for c in dictionary})
    delta_defaults = "spark.databricks.delta.properties.defaults."
    if schema.passthrough:
        settings[f"{delta_defaults}dataSkippingStatsColumns"] = ",".join(schema.passthrough)
    else:
        settings[f"{delta_defaults}dataSkippingNumIndexedCols"] = "0"
    return settings


def _per_split(counts: dict[str, int]) -> str:
    return " / ".join(f"{counts.get(s, 0):,}" for s in ("train", "validation", "test"))


def summary(result: FeaturizeResult) -> str:
    """A few lines a person reads after the stage: rows, missing values, categorical folding, where things went."""
    report, fitted = result.report, result.fitted
    rows = ", ".join(
        f"{s} {n:,}" + (f" ({report.positives[s] / n:.1%} positive)" if n else "") for s, n in report.rows.items()
    )
    lines = [
        f"featurize: wrote {result.table} (Delta version {result.table_version}; files {_per_split(result.files)}) "
        f"and artifact {result.artifact_version} at {result.artifact_path} in {result.seconds:.1f}s",
        f"  rows: {rows}",
    ]
    missing = [f"{c} {_per_split(n)}" for c, n in report.missing.items() if any(n.values())]
    if missing:
        lines += textwrap.wrap("missing values (train / validation / test): " + ", ".join(missing), width=118,
                               initial_indent="  ", subsequent_indent="    ")
    empty = [c for c, s in fitted.numeric.items() if s.count == 0]
    empty += [f.output_column for f in fitted.spec.datetime
              if report.rows["train"] and report.missing[f.output_column]["train"] == report.rows["train"]]
    if empty:
        lines.append(f"  warning: no training values in {', '.join(empty)}: filled with a constant, the model learns nothing from them")
    for f in fitted.spec.categorical:
        vocabulary = fitted.vocabularies[f.column]
        rule = f"min_count {f.min_count}" + (f", top_k {f.top_k}" if f.top_k else "")
        lines.append(
            f"  {f.column}: {f.encoding}, {len(vocabulary.values):,} of {vocabulary.distinct:,} values kept ({rule}); "
            f"rows mapped to the reserved id 0 (train / validation / test): {_per_split(report.other[f.column])}, "
            f"of them never seen in training: {_per_split(report.unseen[f.column])}"
        )
        once = sum(n == 1 for n in vocabulary.counts)
        if len(vocabulary.values) > ID_LIKE_VALUES and once > len(vocabulary.values) / 2:
            lines.append(
                f"  warning: {f.column} keeps {len(vocabulary.values):,} values, {once:,} of them seen once in "
                "training: it looks like an id, which a model cannot learn from; list it under featurize.passthrough "
                "or set min_count (for example 10)")
    return "\n".join(lines)


def plan(spark: SparkSession, cfg: Config, ctx: StageContext) -> StagePlan:
    entry, identity = source_input(spark, cfg, cfg.featurize.input)
    return StagePlan("featurize", [entry], {
        "featurize": section(cfg.featurize), "input": identity, "table": cfg.qualified(cfg.featurize.output_table),
        "workers": training_workers(spark, cfg),  # the table's file layout is planned for the training workers
    })


def outputs(cfg: Config, result: FeaturizeResult) -> StageOutputs:
    rows = result.rows_per_split
    return StageOutputs([
        {"kind": "table", "name": result.table, "version": result.table_version},
        {"kind": "artifact", "name": cfg.featurize.output_table, "version": result.artifact_version,
         "path": result.artifact_path},
    ], sum(rows.values()), {f"{split}_rows": float(n) for split, n in rows.items()})


STAGE = Stage(
    name="featurize",
    help="split the input, fit the feature transform on the training split, write the feature table",
    plan=plan,
    run=lambda spark, cfg, ctx: run(spark, cfg),
    outputs=outputs,
)
