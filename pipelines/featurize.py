"""Stage ``featurize``: split the input, fit the feature transform on the training split, write the feature table.

Reads ``featurize.input``; writes the Delta table ``featurize.output_table`` partitioned by ``split`` (float32 and
int32 columns, laid out as at least four files per training worker for Petastorm) and the next version of the
fitted artifact under ``<data_dir>/artifacts/<output_table>/``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.errors import FeatureError
from features.schema import SPLIT_COLUMN
from features.split import assign_split
from features.transform import FeatureSpec, apply_features, check_input, fit_features
from pipelines.config import Config
from pipelines.store import save_artifact
from pipelines.tables import delta_version, read_source, table_version

ROWS_PER_FILE = 250_000
FILES_PER_WORKER = 4


@dataclass(frozen=True)
class FeaturizeResult:
    table: str
    table_version: int
    artifact_version: str
    artifact_path: str
    rows_per_split: dict[str, int]
    seconds: float


def feature_spec(cfg: Config) -> FeatureSpec:
    fc = cfg.featurize
    passthrough = tuple(dict.fromkeys(((fc.key,) if fc.key else ()) + fc.passthrough))
    return FeatureSpec(fc.label, fc.numeric, fc.categorical, passthrough, fc.min_count)


def count_splits(split: DataFrame, label: str) -> dict[str, int]:
    """Rows per split, in one pass that also rejects labels other than 0 and 1."""
    bad = ~F.col(label).cast("string").isin("0", "1", "0.0", "1.0") | F.col(label).isNull()
    rows = split.groupBy(SPLIT_COLUMN).agg(F.count(F.lit(1)).alias("rows"), F.sum(bad.cast("long")).alias("bad")).collect()
    bad_rows = sum(r["bad"] for r in rows)
    if bad_rows:
        examples = [r[0] for r in split.where(bad).select(label).distinct().limit(5).collect()]
        raise FeatureError(
            f"label column {label!r} has {bad_rows} rows outside the binary classes 0 and 1 "
            f"(for example {examples}); fix the input or the label setting"
        )
    counts = {name: 0 for name in ("train", "validation", "test")}
    counts.update({r[SPLIT_COLUMN]: int(r["rows"]) for r in rows})
    return counts


def run(spark: SparkSession, cfg: Config) -> FeaturizeResult:
    started = time.time()
    fc = cfg.featurize
    raw = read_source(spark, cfg, fc.input)
    spec = feature_spec(cfg)
    check_input(raw, spec)
    split = assign_split(raw, fc.key, fc.split.train, fc.split.validation, fc.split.seed, name=SPLIT_COLUMN)
    rows_per_split = count_splits(split, fc.label)
    total = sum(rows_per_split.values())
    if total == 0:
        raise FeatureError(f"input {fc.input.describe()} is empty: nothing to featurize")

    fitted = fit_features(split.where(F.col(SPLIT_COLUMN) == "train"), spec)
    features = apply_features(split, fitted, keep=(SPLIT_COLUMN,))
    files = max(FILES_PER_WORKER * cfg.train.num_proc, math.ceil(total / ROWS_PER_FILE))
    table = cfg.qualified(fc.output_table)
    (
        features.repartition(files)
        .write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .partitionBy(SPLIT_COLUMN).saveAsTable(table)
    )
    version = delta_version(spark, table)
    artifact_version, artifact_path = save_artifact(cfg, fc.output_table, {
        **fitted.to_json(),
        "input": {"source": fc.input.describe(), "delta_version": table_version(spark, cfg, fc.input)},
        "split": {"key": fc.key, "train": fc.split.train, "validation": fc.split.validation,
                  "test": fc.split.test, "seed": fc.split.seed},
        "rows_per_split": rows_per_split,
        "feature_table": {"name": table, "delta_version": version, "files_per_split": files},
    })
    result = FeaturizeResult(table, version, artifact_version, str(artifact_path), rows_per_split, time.time() - started)
    print(
        f"featurize: wrote {table} (Delta version {version}; "
        + ", ".join(f"{k} {v:,}" for k, v in rows_per_split.items())
        + f" rows) and artifact {artifact_version} at {artifact_path} in {result.seconds:.1f}s"
    )
    return result
