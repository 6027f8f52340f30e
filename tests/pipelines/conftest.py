from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import REPO
from tests.pipelines.cli import dlpipe, ok, settings

# Every session setting a stage changes for its own work (featurize: Parquet dictionaries and Delta statistics; the
# fit's wide aggregations: codegen limits; infer: Arrow batches), each given a value of the user's own first.
USER_SETTINGS = {
    "parquet.enable.dictionary": "true",
    "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": "7",
    "spark.sql.codegen.maxFields": "150",
    "spark.sql.codegen.hugeMethodLimit": "65000",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "777",
    "spark.sql.execution.arrow.maxBytesPerBatch": "123456789",
}


@pytest.fixture(scope="session")
def feature_data(tmp_path_factory):
    """A data folder with the demo's generated table and feature table (tests.pipelines.cli.ROWS rows), shared by
    the training and tuning tests."""
    data_dir = tmp_path_factory.mktemp("train") / "var"
    ok(dlpipe("run", *settings(data_dir, "stages=[generate, featurize]")))
    return data_dir


@dataclass(frozen=True)
class InProcessRun:
    cfg: object                             # the demo config on ROWS rows, database in_process
    settings_after: dict[str, dict]         # stage -> USER_SETTINGS as the session had them after it


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


@pytest.fixture(scope="session")
def in_process_run(spark, test_config) -> InProcessRun:
    """Every stage of the demo pipeline in this test process, one ``dlpipe run --stages X`` at a time, on the test
    session (database in_process), with the user's own values of USER_SETTINGS set: train without a Horovod launch
    (which must not fork a process that ran TensorFlow), as an untrained model saved the way train saves one."""
    from dlpipe.pipelines import run
    from dlpipe.pipelines.config import load_config
    from dlpipe.spark_settings import spark_settings
    from tests.pipelines.cli import ROWS

    cfg = load_config(REPO / "conf" / "demo.yaml", [f"data_dir={test_config.data_dir}", "database=in_process",
                                                    f"generate.rows={ROWS}", "generate.partitions=2"])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
    seen = {}
    with spark_settings(spark, USER_SETTINGS):
        for stage in ("generate", "featurize", "train", "infer", "evaluate"):
            if stage == "train":
                save_untrained_model(cfg)
            else:
                result = run.run(spark, cfg, run_id="in-process", stages=[stage])
                assert result.outcomes[stage].status == "succeeded"
            seen[stage] = {key: spark.conf.get(key, None) for key in USER_SETTINGS}
    return InProcessRun(cfg, seen)
