"""The hyperparameter scan: which configs it tries and how it ranks them (no Spark), and ``dlpipe tune`` as users
run it: trials as parallel Spark tasks, a ranked Delta results table, the best config printed, a rerun replacing
its scan's rows."""
import json
import re
import shlex

import pytest

from dlpipe.pipelines.config import TuneConfig
from dlpipe.pipelines.tune import _set_options, rank_trials, trial_params
from tests.pipelines.cli import dlpipe, ok, settings
from tests.versions import latest


def test_grid_tries_every_combination_once():
    tune = TuneConfig(strategy="grid", trials=6, space={"learning_rate": [0.01, 0.001], "hidden_units": [[8], [16, 8], [4]]})
    params = trial_params(tune)
    assert len(params) == 6
    assert {(p["learning_rate"], p["hidden_units"]) for p in params} == {
        (lr, units) for lr in (0.01, 0.001) for units in ((8,), (16, 8), (4,))}


def test_random_draws_are_seeded_distinct_and_within_ranges():
    space = {"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}, "dropout": {"low": 0.0, "high": 0.5},
             "batch_size": {"low": 32, "high": 256}, "activation": ["relu", "tanh"]}
    tune = TuneConfig(strategy="random", trials=20, space=space, seed=3)
    params = trial_params(tune)
    assert params == trial_params(tune) and params != trial_params(TuneConfig(trials=20, space=space, seed=4))
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 20
    rates = [p["learning_rate"] for p in params]
    assert all(1e-4 <= r <= 1e-1 for r in rates) and min(rates) < 1e-3 < max(rates)  # log-uniform spans decades
    assert all(0.0 <= p["dropout"] <= 0.5 and isinstance(p["batch_size"], int) and 32 <= p["batch_size"] <= 256
               for p in params)
    assert {p["activation"] for p in params} == {"relu", "tanh"}


def test_a_small_space_of_lists_gives_each_config_once():
    tune = TuneConfig(strategy="random", trials=10, space={"activation": ["relu", "tanh"]})
    assert sorted(p["activation"] for p in trial_params(tune)) == ["relu", "tanh"]


def test_ranking_puts_the_best_first_and_failures_last():
    trials = [{"trial": 1, "value": 0.70}, {"trial": 2, "value": None}, {"trial": 3, "value": 0.75}]
    assert [t["trial"] for t in rank_trials(TuneConfig(metric="val_auc"), trials)] == [3, 1, 2]
    assert [t["trial"] for t in rank_trials(TuneConfig(metric="val_loss"), trials)] == [1, 3, 2]
    assert [t["rank"] for t in rank_trials(TuneConfig(), trials)] == [1, 2, 3]


def test_best_config_is_printed_as_set_options_a_shell_takes():
    assert _set_options({"hidden_units": (16, 8), "activation": "tanh", "learning_rate": 0.003}, 4) == (
        "--set train.num_proc=4 --set train.hidden_units=[16,8] --set train.activation=tanh "
        "--set train.learning_rate=0.003")


@pytest.mark.slow
def test_tune_runs_trials_as_spark_tasks_and_ranks_them_in_a_delta_table(spark, feature_data):
    space = "tune.space={learning_rate: [0.01, 0.0001], hidden_units: [[8], [16, 8]]}"
    args = settings(feature_data, "tune.strategy=grid", "tune.trials=4", space, "train.epochs=2")
    out = ok(dlpipe("tune", *args, "--run-id", "scan-1"))
    log = out.stdout + out.stderr
    assert ("tune: scan scan-1: 4 grid trials of mlp higgs_mlp, 2 at a time, each on one worker as a training on 2 "
            "(train.num_proc)") in out.stdout
    for trial in range(1, 5):
        assert f"tune: trial {trial}: epoch 2/2:" in log
    trials = str(feature_data / "warehouse" / "dlpipe.db" / "tune_trials")
    lines = [r.asDict() for r in spark.read.format("delta").load(trials).where("tune_id = 'scan-1'").orderBy("rank").collect()]
    assert len(lines) == 4, lines
    values = [r["value"] for r in lines]
    assert values == sorted(values, reverse=True) and all(0.0 < v <= 1.0 for v in values) and values[0] > 0.65
    assert [r["rank"] for r in lines] == [1, 2, 3, 4]
    best_trial = lines[0]["trial"]
    assert f"tune: best: trial {best_trial}, val_auc {values[0]:.4f}" in out.stdout
    assert "train it with: dlpipe train --config conf/demo.yaml --set train.num_proc=2 --set train.learning_rate=" \
        in out.stdout
    model_dir = feature_data / "models" / "higgs_mlp" / "tune" / "scan-1"
    assert all((model_dir / f"trial-{n}" / "model.keras").is_file() for n in range(1, 5))

    # The printed line trains what the trial trained: 2 workers of batch 64 with the learning rate doubled after
    # a warm-up epoch, where the trial took batches of 128 on one worker. Only the order of the rows differs.
    line = re.search(r"train it with: dlpipe train (.*)$", out.stdout, re.MULTILINE).group(1)
    ok(dlpipe("train", *settings(feature_data, "train.model_name=retrained_mlp")[2:], *shlex.split(line)))
    trial = json.loads((model_dir / f"trial-{best_trial}" / "state.json").read_text())["history"]
    retrained = json.loads((latest(feature_data / "models" / "retrained_mlp") / "metadata.json").read_text())["history"]
    print("first-epoch loss, val_loss: trial", trial["loss"][0], trial["val_loss"][0],
          "retrained", retrained["loss"][0], retrained["val_loss"][0])
    assert retrained["loss"][0] == pytest.approx(trial["loss"][0], rel=0.01)
    assert retrained["val_loss"][0] == pytest.approx(trial["val_loss"][0], rel=0.01)

    # the same scan id again replaces its rows (here with a smaller scan)
    ok(dlpipe("tune", *settings(feature_data, "tune.strategy=grid", "tune.trials=4",
                                "tune.space={learning_rate: [0.01]}", "train.epochs=1"), "--run-id", "scan-1"))
    assert spark.read.format("delta").load(trials).where("tune_id = 'scan-1'").count() == 1


def test_a_bad_search_space_fails_before_any_spark_work(tmp_path):
    out = dlpipe("tune", *settings(tmp_path / "var", "tune.space={num_proc: [1, 2]}"))
    assert out.returncode == 2
    assert out.stderr.startswith("dlpipe tune: config error: --set: tune.space.num_proc: is not a train key")
