"""Airflow DAG: the dlpipe pipeline once a day, one task per stage, each a `spark-submit` of ``jobs/run.py``.

Every task runs the command docs/scheduling.md documents, for the DAG run's logical date (``{{ ds }}``) and with
the date as run id, so the stages of one day share a run and its report. A retried or re-triggered task is safe:
a stage whose inputs and settings did not change since it last succeeded is skipped, and a failed stage starts
again (training from its last checkpoint). Copy this file into Airflow's dags folder and set the environment
variables below on the workers (Airflow is not a dependency of dlpipe).

    DLPIPE_HOME     the dlpipe checkout with its .venv and `make dist` output (default /opt/dlpipe)
    DLPIPE_CONFIG   the pipeline config, relative to DLPIPE_HOME (default conf/demo.yaml)
    DLPIPE_MASTER   the Spark master: local[*], spark://host:7077, yarn, k8s://... (default local[*])
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

HOME = os.environ.get("DLPIPE_HOME", "/opt/dlpipe")
CONFIG = os.environ.get("DLPIPE_CONFIG", "conf/demo.yaml")
MASTER = os.environ.get("DLPIPE_MASTER", "local[*]")
STAGES = ["generate", "featurize", "train", "infer", "evaluate"]  # as `stages` in the config; drop generate for real data


def spark_submit(stage: str) -> str:
    """docs/cluster.md's spark-submit line for one stage of the day's run."""
    ship = "" if MASTER.startswith("local") else (
        "--archives dist/dlpipe-env.tar.gz#environment --conf spark.pyspark.python=./environment/bin/python ")
    return (  # the venv first on PATH, as `source .venv/bin/activate` does: spark-submit finds its Spark through it
        f"cd {HOME} && PATH={HOME}/.venv/bin:$PATH spark-submit --master '{MASTER}' "
        f"--conf spark.pyspark.driver.python=.venv/bin/python {ship}jobs/run.py --config {CONFIG} "
        "--date {{ ds }} --run-id {{ ds }} --stages " + stage
    )


with DAG(
    dag_id="dlpipe_daily",
    description="dlpipe: featurize, train, score and evaluate the day's data",
    schedule="15 2 * * *",  # 02:15 UTC, for the day before (Airflow's logical date)
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,  # one writer at a time on the embedded metastore; a shared metastore allows more
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["dlpipe"],
) as dag:
    tasks = [BashOperator(task_id=stage, bash_command=spark_submit(stage)) for stage in STAGES]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
