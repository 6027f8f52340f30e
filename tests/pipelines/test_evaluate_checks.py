"""What evaluate refuses instead of reporting a wrong metric: a key that names several rows, which would join every
copy of a row to every one of its scores."""
from __future__ import annotations

import dataclasses

import pytest

from dlpipe.pipelines.errors import PipelineError
from tests.conftest import REPO
from tests.pipelines.conftest import save_untrained_model

pytestmark = pytest.mark.slow


def test_a_key_that_is_not_unique_is_refused_with_the_count(spark, test_config):
    from dlpipe.pipelines import run
    from dlpipe.pipelines.config import TableSource, load_config

    cfg = load_config(REPO / "conf" / "demo.yaml", [f"data_dir={test_config.data_dir}", "database=key_check",
                                                    "generate.rows=400", "generate.partitions=2"])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
    run.run(spark, cfg, run_id="g1", stages=["generate"])
    raw = spark.table(cfg.qualified(cfg.generate.output_table))
    raw.unionByName(raw).write.format("delta").saveAsTable(cfg.qualified("twice"))  # every row_id twice
    twice = TableSource(table="twice")
    cfg = dataclasses.replace(cfg, featurize=dataclasses.replace(cfg.featurize, input=twice),
                              infer=dataclasses.replace(cfg.infer, input=twice))
    run.run(spark, cfg, run_id="f1", stages=["featurize"])
    save_untrained_model(cfg)
    run.run(spark, cfg, run_id="k1", stages=["infer"])
    validation = spark.table(cfg.qualified(cfg.featurize.output_table)).where("split = 'validation'").count()
    with pytest.raises(PipelineError) as err:
        run.run(spark, cfg, run_id="k1", stages=["evaluate"])
    assert str(err.value) == (
        f"featurize.key 'row_id' is not unique in table twice: {validation // 2:,} keys of the validation split name "
        f"{validation:,} rows; evaluate joins predictions to labels by it: make featurize.key an id column that "
        "names one row")
    assert not spark.catalog.tableExists(cfg.qualified(cfg.evaluate.metrics_table))
