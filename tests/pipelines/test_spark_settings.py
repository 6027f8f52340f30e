"""Session settings a stage changes for its own work are back to the user's values after it: the helper, and every
stage of a real run in this process (the model a quick untrained one, saved as train would)."""
from __future__ import annotations

import pytest

from dlpipe.spark_settings import spark_settings
from tests.conftest import REPO

# Every setting a stage changes for a while (featurize: Parquet dictionaries and Delta statistics; the fit's
# wide aggregations: codegen limits; infer: Arrow batches), each given a value of the user's own first.
USER_SETTINGS = {
    "parquet.enable.dictionary": "true",
    "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "7",
    "spark.sql.codegen.maxFields": "150",
    "spark.sql.codegen.hugeMethodLimit": "65000",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "777",
    "spark.sql.execution.arrow.maxBytesPerBatch": "123456789",
}


def test_a_value_is_restored_and_an_unset_key_is_unset_again(spark):
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "321")
    spark.conf.unset("dlpipe.test.unset")
    with spark_settings(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "5", "dlpipe.test.unset": "x"}):
        assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "5"
        assert spark.conf.get("dlpipe.test.unset") == "x"
    assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "321"
    assert spark.conf.get("dlpipe.test.unset", None) is None
    with pytest.raises(RuntimeError), spark_settings(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "6"}):
        raise RuntimeError("a stage that fails")
    assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "321"


def save_untrained_model(cfg) -> str:
    """A model of the artifact's inputs, untrained, saved as the next version the way the train stage saves one."""
    from dlpipe.features.schema import FeatureSchema
    from dlpipe.models.networks import NetworkSettings, build_model
    from dlpipe.pipelines.store import artifact_digest, load_artifact, new_model_dir, save_model_metadata

    artifact = load_artifact(cfg, cfg.featurize.output_table)
    schema = FeatureSchema.from_json(artifact["feature_schema"])
    version, folder = new_model_dir(cfg, cfg.train.model_name)
    build_model(schema, NetworkSettings(hidden_units=(8,))).save(folder / "model.keras")
    save_model_metadata(folder, {
        "model_name": cfg.train.model_name, "model_version": version, "model_file": "model.keras",
        "feature_artifact": {"table": cfg.featurize.output_table, "version": artifact["version"],
                             "sha256": artifact_digest(artifact)},
        "feature_schema": schema.to_json(),
    })
    return version


def test_a_users_settings_survive_every_stage(spark, test_config):
    from dlpipe.pipelines import run
    from dlpipe.pipelines.config import load_config

    cfg = load_config(REPO / "conf" / "demo.yaml", [f"data_dir={test_config.data_dir}", "database=settings_test",
                                         "generate.rows=3000", "generate.partitions=2"])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
    before = {key: spark.conf.get(key, None) for key in USER_SETTINGS}
    for key, value in USER_SETTINGS.items():
        spark.conf.set(key, value)
    try:
        for stages in (["generate"], ["featurize"], None, ["infer"], ["evaluate"]):
            if stages is None:  # train, without a Horovod launch from this process
                save_untrained_model(cfg)
                continue
            result = run.run(spark, cfg, run_id="user-settings", stages=stages)
            assert result.outcomes[stages[0]].status == "succeeded"
            assert {key: spark.conf.get(key) for key in USER_SETTINGS} == USER_SETTINGS, f"after {stages[0]}"
        assert result.outcomes["evaluate"].rows > 0
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
