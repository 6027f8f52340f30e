"""What the train stage refuses before any Horovod launch, called in this process on the in-process run's feature
table: each message says what to change."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from dlpipe.pipelines.errors import PipelineError
from tests.versions import latest


def train_with(spark, cfg, **train):
    from dlpipe.pipelines import train as stage

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, start_timeout_s=10, **train))
    with pytest.raises(PipelineError) as err:
        stage.run(spark, cfg, run_id="refused")
    return str(err.value)


def test_a_sample_weight_that_is_not_passed_through_is_refused(spark, in_process_run):
    assert train_with(spark, in_process_run.cfg, sample_weight="weight") == (
        "train.sample_weight 'weight' is not a passthrough column of in_process.features (passthrough: row_id): "
        "add it to featurize.passthrough")


def test_too_few_task_slots_fail_at_once(spark, in_process_run):
    assert train_with(spark, in_process_run.cfg, num_proc=3) == (  # the test session is local[2]
        "train.num_proc is 3 but the Spark application has 2 task slots: lower train.num_proc or give Spark more cores")


def test_a_feature_table_that_does_not_match_its_artifact_is_refused(spark, in_process_run):
    cfg = in_process_run.cfg
    folder = cfg.outputs_path / "artifacts" / cfg.featurize.output_table
    newest = latest(folder, ".json")
    artifact = json.loads(newest.read_text())
    artifact["feature_schema"]["features"][0]["name"] = "lepton_eta_v2"  # what a changed spec would expect
    fake = folder / f"v{int(newest.stem[1:]) + 1}.json"
    fake.write_text(json.dumps(artifact))
    try:
        message = train_with(spark, cfg)
    finally:
        fake.unlink()
    assert message == ("in_process.features does not match the feature schema: lepton_eta_v2 is missing; "
                       "re-run `dlpipe featurize` so table and artifact match")


def test_a_training_split_of_one_class_is_refused(spark, in_process_run):
    from pyspark.sql import functions as F

    from dlpipe.pipelines import featurize
    from dlpipe.pipelines.config import TableSource

    cfg = in_process_run.cfg
    raw = cfg.qualified(cfg.featurize.input.table)
    spark.table(raw).withColumn("label", F.lit(0)).write.format("delta").mode("overwrite") \
        .saveAsTable(cfg.qualified("one_class_raw"))
    one_class = dataclasses.replace(cfg, featurize=dataclasses.replace(
        cfg.featurize, input=TableSource(table="one_class_raw"), output_table="one_class_features"))
    rows = featurize.run(spark, one_class).report.rows["train"]
    assert train_with(spark, one_class) == (
        f"every row of the training split of in_process.one_class_features has label 0 ({rows:,} rows): a "
        "classifier needs both classes; check featurize.label and the input")


def test_a_feature_table_written_since_its_artifact_is_refused_and_a_lost_file_is_not_reused(spark, in_process_run):
    """Train reads the table version its artifact names, never one written since; a featurize whose table lost a
    data file is not skipped as unchanged."""
    from dlpipe.pipelines import featurize
    from dlpipe.pipelines.stage import outputs_changed

    cfg = in_process_run.cfg
    moved = dataclasses.replace(cfg, featurize=dataclasses.replace(cfg.featurize, output_table="moved_features"))
    result = featurize.run(spark, moved)
    table = result.table
    entries = featurize.outputs(moved, result).entries
    assert outputs_changed(spark, moved, entries) is None
    lost = next(f for f in spark.table(table).inputFiles() if "split=train" in f)
    os.rename(lost.removeprefix("file:"), lost.removeprefix("file:") + ".away")
    try:
        assert outputs_changed(spark, moved, entries) == (
            f"1 data file(s) of table {table} are missing (first: {lost})")
    finally:
        os.rename(lost.removeprefix("file:") + ".away", lost.removeprefix("file:"))
    first = spark.table(table).agg({"row_id": "min"}).first()[0]
    spark.sql(f"DELETE FROM {table} WHERE row_id = {first}")
    assert train_with(spark, moved) == (
        f"feature table {table} is at version {result.table_version + 1}, not the version {result.table_version} "
        f"of {table} that feature artifact {result.artifact_version} was fitted with (it was written since): "
        "re-run `dlpipe featurize`")
    assert outputs_changed(spark, moved, entries) == (
        f"table {table} changed since (version {result.table_version} -> {result.table_version + 1})")


def test_balanced_class_weights_give_both_classes_the_same_training_weight(spark, in_process_run):
    from pyspark.sql import functions as F

    from dlpipe.pipelines.train import class_weights, label_totals, training_inputs

    cfg = in_process_run.cfg
    balanced = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, class_weight="balanced"))
    inputs = training_inputs(spark, balanced)
    totals = label_totals(spark, balanced, inputs)
    negative, positive = class_weights(balanced, inputs, totals)
    counts = {r[0]: r[1] for r in spark.table(inputs.table).where(F.col("split") == "train")
              .groupBy("label").count().collect()}
    assert counts[0] != counts[1]  # the generator's labels are not balanced to begin with
    assert negative * counts[0] == pytest.approx(positive * counts[1])
    assert negative * counts[0] + positive * counts[1] == pytest.approx(counts[0] + counts[1])
    assert totals == {0: counts[0], 1: counts[1]}
    assert class_weights(cfg, inputs, totals) is None  # not asked for


def test_class_weights_multiply_the_sample_weights_of_training_batches_only():
    import numpy as np

    from dlpipe.features.schema import FeatureColumn, FeatureSchema
    from dlpipe.models.reader import LABEL, WEIGHT, ReadSettings, training_arrays
    from dlpipe.models.trainer import TrainSettings

    schema = FeatureSchema("label", (FeatureColumn("x", "dense", "float32"),), passthrough=("w",))
    columns = {"x": np.zeros(4, np.float32), "label": np.array([0, 1, 1, 0]), "w": np.array([1.0, 2.0, 3.0, 4.0])}
    arrays = training_arrays(schema, ReadSettings(schema, 4, 1, "w", class_weights=(0.5, 2.0)), columns)
    assert arrays[WEIGHT].tolist() == [0.5, 4.0, 6.0, 2.0] and arrays[LABEL].tolist() == [0, 1, 1, 0]
    settings = TrainSettings((), (), schema, None, 1, 4, 1, 0.001, "", "", weight_column="w",
                             class_weights=(0.5, 2.0))
    assert settings.read_settings().class_weights == (0.5, 2.0)
    assert settings.read_settings(validation=True).class_weights is None
