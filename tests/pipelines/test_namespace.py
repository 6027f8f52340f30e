"""Two teams on one data folder (one metastore, one warehouse): each team's tables, artifacts and models stay
under its namespace. Both run in this test process, on the test session's metastore and warehouse."""
import json

import pytest

from dlpipe.pipelines import run, sql
from dlpipe.pipelines.config import load_config
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # two pipelines of three stages in all


def test_two_namespaces_share_the_metastore_but_not_their_tables(spark, test_config):
    data_dir = test_config.data_path
    configs = {}
    for team, rows, stages in (("team_a", 2000, ["generate", "featurize"]), ("team_b", 3000, ["generate"])):
        cfg = load_config(REPO / "conf" / "demo.yaml", [f"data_dir={data_dir}", f"namespace={team}",
                                                        f"generate.rows={rows}", "generate.partitions=2"])
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
        run.run(spark, cfg, run_id=f"{team}-1", stages=stages)
        configs[team] = cfg
    current = spark.catalog.currentDatabase()
    try:
        for team, rows in (("team_a", 2000), ("team_b", 3000)):
            assert sql.run(spark, configs[team], "SELECT count(*) AS n FROM raw_events") == [(rows,)]
            assert (data_dir / "warehouse" / f"{team}__dlpipe.db" / "raw_events").is_dir()
    finally:
        spark.catalog.setCurrentDatabase(current)
    assert (data_dir / "namespaces" / "team_a" / "artifacts" / "features" / "v1.json").is_file()
    assert not (data_dir / "namespaces" / "team_b" / "artifacts" / "features").exists()
    shared = data_dir / "artifacts" / "features"  # other tests' artifacts, never team_a's
    assert all("team_a" not in json.loads(p.read_text())["feature_table"]["name"] for p in shared.glob("v*.json"))
    assert (data_dir / "namespaces" / "team_a" / "runs" / "team_a-1" / "report.html").is_file()
