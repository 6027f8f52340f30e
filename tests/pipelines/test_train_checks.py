"""What the train stage refuses before any Horovod launch, called in this process on the in-process run's feature
table: each message says what to change."""
from __future__ import annotations

import dataclasses
import json

import pytest

from dlpipe.pipelines.errors import PipelineError
from tests.versions import latest


def train_with(spark, cfg, **train):
    from dlpipe.pipelines import train as stage

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, start_timeout_s=10, **train))
    with pytest.raises(PipelineError) as err:
        stage.run(spark, cfg, run_id="refused")
    return str(err.value)


def test_a_sample_weight_that_is_not_passed_through_is_refused(spark, in_process_run):
    assert train_with(spark, in_process_run.cfg, sample_weight="weight") == (
        "train.sample_weight 'weight' is not a passthrough column of in_process.features (passthrough: row_id): "
        "add it to featurize.passthrough")


def test_too_few_task_slots_fail_at_once(spark, in_process_run):
    assert train_with(spark, in_process_run.cfg, num_proc=3) == (  # the test session is local[2]
        "train.num_proc is 3 but the Spark application has 2 task slots: lower train.num_proc or give Spark more cores")


def test_a_feature_table_that_does_not_match_its_artifact_is_refused(spark, in_process_run):
    cfg = in_process_run.cfg
    folder = cfg.outputs_path / "artifacts" / cfg.featurize.output_table
    newest = latest(folder, ".json")
    artifact = json.loads(newest.read_text())
    artifact["feature_schema"]["features"][0]["name"] = "lepton_eta_v2"  # what a changed spec would expect
    fake = folder / f"v{int(newest.stem[1:]) + 1}.json"
    fake.write_text(json.dumps(artifact))
    try:
        message = train_with(spark, cfg)
    finally:
        fake.unlink()
    assert message == ("in_process.features does not match the feature schema: lepton_eta_v2 is missing; "
                       "re-run `dlpipe featurize` so table and artifact match")
