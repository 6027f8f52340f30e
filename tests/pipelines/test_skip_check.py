"""A stage is skipped only while its outputs still hold what it wrote: a scheduler's retry after rows of the run
were deleted from a shared table redoes the stage instead of succeeding with nothing written."""
from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.pipelines.conftest import save_untrained_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scored(spark, test_config):
    """The demo pipeline on 600 rows in its own database, through infer as run k2 (an untrained model)."""
    from dlpipe.pipelines import run
    from dlpipe.pipelines.config import load_config

    cfg = load_config(REPO / "conf" / "demo.yaml", [f"data_dir={test_config.data_dir}", "database=skip_check",
                                                    "generate.rows=600", "generate.partitions=2"])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
    run.run(spark, cfg, run_id="k1", stages=["generate", "featurize"])
    save_untrained_model(cfg)
    first = run.run(spark, cfg, run_id="k2", stages=["infer"])
    assert first.outcomes["infer"].status == "succeeded" and first.outcomes["infer"].rows == 600
    return cfg


def test_deleted_rows_of_a_run_make_its_retry_score_again(spark, scored, capsys):
    from dlpipe.pipelines import run

    table = scored.qualified("predictions")
    again = run.run(spark, scored, run_id="k2", stages=["infer"])
    assert again.outcomes["infer"].status == "skipped"  # everything still there: reused

    spark.sql(f"DELETE FROM {table} WHERE run_id = 'k2' AND row_id % 2 = 0")
    retry = run.run(spark, scored, run_id="k2", stages=["infer"])
    assert retry.outcomes["infer"].status == "succeeded"
    assert f"infer: starting again: table {table} holds 300 rows of run k2, not the 600 written" in \
        capsys.readouterr().out
    assert spark.table(table).where("run_id = 'k2'").count() == 600

    spark.sql(f"DELETE FROM {table} WHERE run_id = 'k2'")
    assert run.run(spark, scored, run_id="k2", stages=["infer"]).outcomes["infer"].status == "succeeded"
    assert spark.table(table).where("run_id = 'k2'").count() == 600
