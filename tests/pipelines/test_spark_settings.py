"""Session settings a stage changes for its own work are back to the user's values after it: the helper, and every
stage of a real run in this process."""
from __future__ import annotations

import pytest

from dlpipe.spark_settings import spark_settings
from tests.pipelines.conftest import USER_SETTINGS


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


def test_a_users_settings_survive_every_stage(in_process_run):
    assert in_process_run.settings_after == {stage: USER_SETTINGS for stage in in_process_run.settings_after}
    assert list(in_process_run.settings_after) == ["generate", "featurize", "train", "infer", "evaluate"]
