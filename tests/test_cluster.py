"""The same jobs on a real Spark standalone cluster: a master and two 1-core workers on 127.0.0.1, the pipeline's
driver in its own process pointed at them with ``spark.master``, Horovod with one rank per worker."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.standalone import standalone_cluster

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def test_generate_featurize_and_train_on_a_standalone_cluster(tmp_path):
    data_dir = tmp_path / "var"
    with standalone_cluster(tmp_path / "cluster", workers=2, cores=1, memory="3g") as master:
        sets = [f"data_dir={data_dir}", f"spark.master={master}", "spark.conf={spark.executor.memory: 2g}",
                "stages=[generate, featurize, train]", "generate.rows=3000", "generate.partitions=2",
                "train.num_proc=2", "train.epochs=2", "train.batch_size=64", "train.hidden_units=[16, 8]"]
        out = subprocess.run([str(BIN / "dlpipe"), "run", "--config", "conf/demo.yaml", "--run-id", "cluster-1",
                              *[arg for s in sets for arg in ("--set", s)]],
                             cwd=REPO, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    log = out.stdout + out.stderr
    assert "on 2 Horovod workers" in log and "train: epoch 2/2:" in log
    metadata = json.loads(sorted((data_dir / "models" / "higgs_mlp").glob("v*/metadata.json"))[-1].read_text())
    assert metadata["run_id"] == "cluster-1" and metadata["epochs_done"] == 2
    assert len(metadata["seconds_per_rank"]) == 2
    assert 0.5 < metadata["history"]["val_auc"][-1] <= 1.0
    # the executors ran on the workers, not in the driver: each worker has an application folder
    apps = list((tmp_path / "cluster" / "work").glob("app-*/*"))
    assert len(apps) >= 2, apps
