"""The featurize stage on generated data: schema contract, Petastorm file layout, artifact, the scoring path's
byte-identical features, stability across input partitioning, and bad inputs that must fail before any write."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from dlpipe.features.apply import apply_features
from dlpipe.features.errors import FeatureError
from dlpipe.features.fitted import FittedFeatures
from dlpipe.pipelines import featurize, generate
from dlpipe.pipelines.config import TableSource, load_config
from dlpipe.pipelines.store import artifact_folder, load_artifact
from dlpipe.pipelines.tables import read_pinned

REPO = Path(__file__).resolve().parents[2]
ROWS = 3000


def pipeline_config(test_config, *overrides):
    return load_config(REPO / "conf" / "demo.yaml", [
        f"data_dir={test_config.data_dir}", f"database={test_config.database}", "spark.master=local[2]",
        f"generate.rows={ROWS}", "generate.partitions=4", "generate.output_table=raw_small",
        "featurize.input={table: raw_small}", "featurize.output_table=features_small", "train.num_proc=2",
        *overrides,
    ])


@pytest.fixture(scope="module")
def featurized(spark, test_config):
    cfg = pipeline_config(test_config)
    generate.run(spark, cfg)
    return cfg, featurize.run(spark, cfg)


def local_path(uri: str) -> str:
    return uri.removeprefix("file:")


def test_table_follows_the_schema_contract(spark, featurized):
    cfg, result = featurized
    table = spark.table(result.table)
    result.fitted.schema.check(table, result.table)
    types = dict(table.dtypes)
    assert types["lepton_pt"] == "float" and types["jet1_btag_missing"] == "float"
    assert types["trigger_id_index"] == "int" and types["detector_region_onehot"] == "array<float>"
    assert types["label"] == "int" and types["row_id"] == "bigint"
    counts = {r["split"]: r["count"] for r in table.groupBy("split").count().collect()}
    assert counts == result.rows_per_split and sum(counts.values()) == ROWS
    properties = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {result.table}").collect()}
    assert properties["delta.dataSkippingStatsColumns"] == "row_id"  # file statistics for the id column only


def test_files_are_laid_out_for_petastorm(spark, featurized):
    cfg, result = featurized
    assert result.files == {"train": 8, "validation": 2, "test": 2}  # 4 per worker for train, 1 per worker else
    for split, expected in result.files.items():
        files = spark.table(result.table).where(F.col("split") == split).inputFiles()
        assert len(files) == expected, split
        assert all(f"/split={split}/" in f for f in files)
        row_groups = [pq.ParquetFile(local_path(f)).metadata.num_row_groups for f in files]
        assert row_groups == [1] * expected  # one row group per file: Petastorm's unit of sharding
        sizes = [pq.ParquetFile(local_path(f)).metadata.num_rows for f in files]
        assert min(sizes) > 0.5 * max(sizes)  # hashed assignment: no tiny files
    first = pq.ParquetFile(local_path(spark.table(result.table).inputFiles()[0])).metadata.row_group(0)
    encodings = {first.column(i).path_in_schema: first.column(i).encodings for i in range(first.num_columns)}
    assert "PLAIN_DICTIONARY" not in encodings["lepton_pt"]  # float features: no dictionary attempt
    assert "PLAIN_DICTIONARY" in encodings["trigger_id_index"]  # categorical ids: dictionary encoded


def test_artifact_records_spec_statistics_input_and_counts(spark, featurized):
    cfg, result = featurized
    artifact = load_artifact(cfg, "features_small", result.artifact_version)
    assert json.loads(Path(result.artifact_path).read_text()) == artifact
    assert artifact["input"] == {"source": "table raw_small", "format": "delta", "delta_version": 0}
    assert artifact["rows_per_split"] == result.rows_per_split
    assert artifact["feature_table"] == {"name": "dlpipe_test.features_small", "delta_version": result.table_version,
                                         "files_per_split": result.files}
    schema = {c["name"]: c for c in artifact["feature_schema"]["features"]}
    assert schema["detector_region_onehot"]["shape"] == [7]  # 5 regions + missing as a value + the other slot
    assert schema["trigger_id_index"]["cardinality"] == len(artifact["categorical"]["trigger_id"]["values"]) + 1
    lepton = artifact["numeric"]["lepton_pt"]
    assert lepton["clip_bounds"][0] < lepton["clip_bounds"][1] and lepton["log_std"] > 0
    assert set(artifact["numeric"]["jet1_btag"]["quantiles"]) == {"0.5"}
    assert FittedFeatures.from_json(artifact) == result.fitted


def test_every_pass_reads_the_input_version_the_artifact_records(spark, featurized, tmp_path):
    cfg, _ = featurized
    spark.table("dlpipe_test.raw_small").write.format("delta").mode("overwrite").saveAsTable("dlpipe_test.raw_pinned")
    source = TableSource(table="raw_pinned")
    rows, identity = read_pinned(spark, cfg, source)
    spark.table("dlpipe_test.raw_small").limit(10).write.format("delta").mode("append").saveAsTable(
        "dlpipe_test.raw_pinned")  # a writer commits between two passes
    assert identity["delta_version"] == 0 and rows.count() == ROWS
    assert read_pinned(spark, cfg, source)[0].count() == ROWS + 10
    spark.sql("DROP TABLE dlpipe_test.raw_pinned")


def test_scoring_path_gives_byte_identical_features(spark, featurized):
    cfg, result = featurized
    fitted = FittedFeatures.from_json(load_artifact(cfg, "features_small"))
    raw = spark.table(cfg.qualified("raw_small"))
    scored = apply_features(raw, fitted)
    written = spark.table(result.table).drop("split")
    assert scored.columns == written.columns
    assert scored.count() == written.count() == ROWS
    assert scored.exceptAll(written).count() == 0 and written.exceptAll(scored).count() == 0


def test_split_and_features_do_not_depend_on_input_partitioning(spark, featurized, tmp_path):
    cfg, result = featurized
    path = tmp_path / "raw.parquet"
    spark.table(cfg.qualified("raw_small")).repartition(3).write.parquet(str(path))
    parquet_cfg = pipeline_config(cfg, f"featurize.input={{path: {path}, format: parquet}}",
                                  "featurize.output_table=features_from_parquet")
    again = featurize.run(spark, parquet_cfg)
    assert again.rows_per_split == result.rows_per_split
    first, second = spark.table(result.table), spark.table(again.table)
    assert first.exceptAll(second).count() == 0 and second.exceptAll(first).count() == 0
    identity = load_artifact(parquet_cfg, "features_from_parquet")["input"]
    assert identity["format"] == "parquet" and len(identity["files"]) >= 3
    assert identity["bytes"] == sum(f["bytes"] for f in identity["files"]) > 0


@pytest.mark.parametrize("case, overrides, message", [
    ("missing column", ["featurize.numeric=[lepton_pt, no_such_column]"],
     "column 'no_such_column' from the feature spec is not in table {table} (its columns: {columns}); "
     "fix the spec or the input"),
    ("string declared numeric", ["featurize.numeric=[lepton_pt, trigger_id]", "featurize.categorical=[run_period]"],
     "column 'trigger_id' is declared numeric but is string in table {table}; list it under categorical or cast "
     "it in the input"),
    ("reject with nulls", ["featurize.numeric=[{columns: [lepton_pt], missing: reject}]"],
     "column 'lepton_pt' has {nulls} rows with a missing value (null, NaN or infinite) and its "
     "missing-value policy is reject; clean the input or choose mean, median or constant"),
])
def test_bad_spec_fails_before_anything_is_written(spark, featurized, case, overrides, message):
    cfg, _ = featurized
    bad = pipeline_config(cfg, "featurize.output_table=never_written", *overrides)
    raw = spark.table(cfg.qualified("raw_small"))
    with pytest.raises(FeatureError) as err:
        featurize.run(spark, bad)
    nulls = raw.where(F.col("lepton_pt").isNull()).count()
    assert str(err.value) == message.format(table="raw_small", columns=", ".join(raw.columns), nulls=nulls)
    assert not spark.catalog.tableExists(bad.qualified("never_written"))
    assert not artifact_folder(bad, "never_written").exists()


def test_bad_rows_fail_before_anything_is_written(spark, featurized):
    cfg, _ = featurized
    raw = spark.table(cfg.qualified("raw_small"))
    raw.withColumn("label", F.when(F.col("row_id") % 500 == 7, F.lit(3)).otherwise(F.col("label"))) \
        .write.format("delta").saveAsTable(cfg.qualified("raw_bad_labels"))
    raw.limit(0).write.format("delta").saveAsTable(cfg.qualified("raw_empty"))
    cases = {
        "raw_bad_labels": "label column 'label' has 6 rows outside the binary classes 0 and 1 (for example [3]); "
                          "fix the input or featurize.label",
        "raw_empty": "table raw_empty has no rows: nothing to featurize (check the input)",
    }
    for table, message in cases.items():
        bad = pipeline_config(cfg, f"featurize.input={{table: {table}}}", "featurize.output_table=never_written")
        with pytest.raises(FeatureError) as err:
            featurize.run(spark, bad)
        assert str(err.value) == message
        assert not spark.catalog.tableExists(bad.qualified("never_written"))
        assert not artifact_folder(bad, "never_written").exists()
