"""The pipeline on a real Spark standalone cluster, as docs/cluster.md submits it: `make dist` packs
the environment, `spark-submit jobs/run.py --archives dist/dlpipe-env.tar.gz#environment` sends it to a master and
two 1-core workers on 127.0.0.1, the executors run Python from the unpacked archive, Horovod one rank per worker."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.standalone import standalone_cluster
from tests.thrift import beeline, serving
from tests.versions import latest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARCHIVE = REPO / "dist" / "dlpipe-env.tar.gz"
ROWS = 3000

pytestmark = pytest.mark.slow


def packed_environment() -> Path:
    """``make dist``'s archive, built again when any source file is newer than it."""
    sources = [p for folder in ("dlpipe", "features", "models", "pipelines", "jobs") for p in (REPO / folder).rglob("*.py")]
    sources += [REPO / "requirements.lock", REPO / "pyproject.toml"]
    if not ARCHIVE.is_file() or max(p.stat().st_mtime for p in sources) > ARCHIVE.stat().st_mtime:
        out = subprocess.run(["make", "dist"], cwd=REPO, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return ARCHIVE


def test_spark_submit_with_the_packed_environment_runs_the_pipeline_on_a_standalone_cluster(spark, shared_metastore,
                                                                                         tmp_path):
    """On the shared PostgreSQL metastore (docs/team.md): `dlpipe serve-sql` started afterwards on this machine
    sees the cluster run's tables."""
    archive = packed_environment()
    data_dir = tmp_path / "var"
    sets = [f"data_dir={data_dir}", f"generate.rows={ROWS}", "generate.partitions=2", "train.num_proc=2",
            "train.epochs=2", "train.batch_size=64", "train.hidden_units=[16, 8]", shared_metastore.setting(),
            "database=cluster"]  # a database of its own on the shared metastore, in this data folder
    with standalone_cluster(tmp_path / "cluster", workers=2, cores=1, memory="3g") as master:
        command = [str(BIN / "spark-submit"), "--master", master, "--archives", f"{archive}#environment",
                   "--conf", f"spark.pyspark.driver.python={sys.executable}",
                   "--conf", "spark.pyspark.python=./environment/bin/python",
                   "--conf", "spark.executor.memory=2g", "jobs/run.py", "--config", "conf/demo.yaml",
                   "--run-id", "cluster-1", *[arg for s in sets for arg in ("--set", s)]]
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PATH": f"{BIN}:{os.environ['PATH']}",
               **shared_metastore.env}
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200, env=env)
        # the MPI controller is for one machine: on a cluster the driver refuses it before anything starts (so this
        # application needs no packed environment on its executors)
        mpi = [str(BIN / "spark-submit"), "--master", master, "--conf", f"spark.pyspark.driver.python={sys.executable}",
               "jobs/train.py", "--config", "conf/demo.yaml", "--run-id", "cluster-mpi",
               *[arg for s in [*sets, "train.controller=mpi"] for arg in ("--set", s)]]
        refused = subprocess.run(mpi, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    expected = (f"train.controller: mpi runs on one machine (a local[...] Spark master), not on {master}: "
                "use train.controller: gloo on a cluster")
    # spark-submit's PythonRunner hands the driver's stderr on through its stdout
    assert refused.returncode != 0 and expected in refused.stdout + refused.stderr, refused.stdout[-3000:]
    log = out.stdout + out.stderr
    assert "on 2 Horovod workers" in log and "train: epoch 2/2:" in log
    metadata = json.loads((latest(data_dir / "models" / "higgs_mlp") / "metadata.json").read_text())
    assert metadata["run_id"] == "cluster-1" and metadata["epochs_done"] == 2
    assert len(metadata["seconds_per_rank"]) == 2
    assert 0.5 < metadata["history"]["val_auc"][-1] <= 1.0

    predictions = spark.read.format("delta").load(str(data_dir / "warehouse" / "cluster.db" / "predictions"))
    assert predictions.where(F.col("run_id") == "cluster-1").count() == ROWS
    assert predictions.where(F.col("score").isNull()).count() == 0
    # the executors ran on the workers with the archive's Python, not the driver's
    apps = list((tmp_path / "cluster" / "work").glob("app-*-0000/*"))  # the executors of the pipeline's application
    assert len(apps) >= 2, apps
    assert all((app / "environment" / "bin" / "python").exists() for app in apps), apps

    with serving(*[arg for s in sets for arg in ("--set", s)], env=shared_metastore.env) as (_, port, _):
        out = beeline(port, "-e", "SELECT count(*) AS n FROM predictions WHERE run_id = 'cluster-1'",
                      database="cluster")
        assert out.stdout.strip().splitlines()[-1] == str(ROWS), out.stdout[-2000:] + out.stderr[-2000:]
