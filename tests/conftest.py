"""One Spark session for the whole test run: local[2], few shuffle partitions, Delta and an embedded metastore
in a temporary data folder, built by the project's own session factory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlpipe.pipelines.config import Config, SparkConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def test_config(tmp_path_factory) -> Config:
    return Config(
        data_dir=str(tmp_path_factory.mktemp("dlpipe-data")),
        database="dlpipe_test",
        spark=SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"),
    )


@pytest.fixture(scope="session")
def spark(test_config):
    from pyspark import cloudpickle

    import tests
    from dlpipe.pipelines.session import build_session

    # Functions defined in the tests travel to Spark's Python workers by value: the workers do not import from the
    # working directory (see pipelines.session), where the tests package is.
    cloudpickle.register_pickle_by_value(tests)
    session = build_session(test_config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """(data folder, output) of the demo pipeline's run e2e-1 on tests.demo.ROWS rows (tests/demo.py)."""
    from tests.demo import run_demo

    data_dir = tmp_path_factory.mktemp("e2e") / "var"
    return data_dir, run_demo(data_dir)


@pytest.fixture(scope="session")
def shared_metastore(tmp_path_factory):
    """A PostgreSQL metastore whose schema a first command created, as docs/team.md asks before parallel runs."""
    from tests import postgres

    server = postgres.start(tmp_path_factory.mktemp("postgres") / "postgres")
    try:
        first = tmp_path_factory.mktemp("first") / "var"
        for statement in ("CREATE TABLE first_use USING delta AS SELECT 1 AS x", "DROP TABLE first_use"):
            out = subprocess.run([str(BIN / "dlpipe"), "sql", statement, "--writable", "--set", f"data_dir={first}",
                                  "--set", server.setting()], cwd=REPO, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, **server.env})
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        yield server
    finally:
        postgres.stop(server)
