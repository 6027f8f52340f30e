"""``dlpipe infer`` as users run it, on the data and model of the demo run (tests/demo.py): scores equal the model's own ``predict``, reruns
replace a run's rows, a killed write leaves the table at its old version, concurrent runs into two partitions both
commit, and bad input fails before scoring with a message that says what to fix."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from dlpipe.pipelines.store import artifact_digest
from tests.demo import BIN, REPO, ROWS, settings
from tests.pipelines.cli import dlpipe, ok

pytestmark = pytest.mark.slow
MODEL = "higgs_mlp"


@pytest.fixture(scope="module")
def data_dir(pipeline_run):
    """The demo run's data folder (tests/demo.py): its raw table, feature artifact and model v1."""
    return pipeline_run[0]


def infer_args(data_dir: Path, *extra: str) -> list[str]:
    return settings(data_dir, *extra)


def table_path(data_dir: Path, name: str) -> str:
    return str(data_dir / "warehouse" / "dlpipe.db" / name)


def predictions(spark, data_dir: Path, table: str = "predictions"):
    return spark.read.format("delta").load(table_path(data_dir, table))


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def write_input(spark, data_dir: Path, path: Path, change=lambda df: df) -> str:
    """The generated raw table, changed by ``change``, written as Parquet to ``path``."""
    change(spark.read.format("delta").load(table_path(data_dir, "raw_events"))).write.mode("overwrite").parquet(str(path))
    return f"infer.input={{path: {path}, format: parquet}}"


def model_predict(data_dir: Path) -> dict[int, float]:
    """``model.predict`` in this process on the feature table's rows (featurized by the featurize stage)."""
    import pyarrow.dataset as ds
    import tensorflow as tf

    metadata = json.loads((data_dir / "models" / MODEL / "v1" / "metadata.json").read_text())
    model = tf.keras.models.load_model(data_dir / "models" / MODEL / "v1" / "model.keras", compile=False)
    schema = metadata["feature_schema"]
    rows = ds.dataset(table_path(data_dir, "features"), format="parquet").to_table().to_pandas()
    dense = [np.stack(rows[c["name"]].to_numpy()) if c["shape"] else rows[c["name"]].to_numpy()[:, None]
             for c in schema["features"] if c["kind"] == "dense"]
    inputs = {"dense": np.concatenate(dense, axis=1).astype(np.float32)}
    inputs.update({c["name"]: rows[c["name"]].to_numpy().astype(np.int32)
                   for c in schema["features"] if c["kind"] == "index"})
    scores = model.predict(inputs, batch_size=1024, verbose=0)[:, 0]
    return dict(zip(rows["row_id"].tolist(), scores.tolist()))


def test_scores_equal_model_predict_and_carry_their_lineage(spark, data_dir):
    out = ok(dlpipe("infer", *infer_args(data_dir), "--run-id", "same-1"))
    assert f"infer: scored {ROWS:,} rows of table raw_events (Delta version 0) with {MODEL} v1" in out.stdout
    assert "scored through the reserved id 0" in out.stdout  # trigger_id has many values too rare to keep
    table = predictions(spark, data_dir).where(F.col("run_id") == "same-1")
    rows = table.collect()
    assert len(rows) == ROWS and len({r["row_id"] for r in rows}) == ROWS
    expected = model_predict(data_dir)
    assert set(expected) == {r["row_id"] for r in rows}
    difference = max(abs(r["score"] - expected[r["row_id"]]) for r in rows)
    assert difference < 1e-5, difference
    first = rows[0]
    assert (first["model_name"], first["model_version"], first["feature_version"], first["input_version"]) == (
        MODEL, "v1", "v1", 0)
    assert all(r["predicted_label"] == int(r["score"] >= 0.5) for r in rows)
    assert first["run_date"] == first["scored_at"].date()


def test_a_write_killed_midway_leaves_the_table_at_its_previous_version(spark, data_dir):
    table = Path(table_path(data_dir, "predictions"))
    before = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()["version"]
    rows_before = predictions(spark, data_dir).count()
    started = time.time()
    # One row per model call: each task scores for seconds after its output file is opened.
    process = subprocess.Popen([str(BIN / "dlpipe"), "infer", *infer_args(data_dir, "infer.batch_size=1"),
                                "--run-id", "killed-1"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not [p for p in table.rglob("part-*.parquet") if p.stat().st_mtime > started]:
            assert process.poll() is None, "infer finished before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()["version"] == before
    assert predictions(spark, data_dir).count() == rows_before
    assert predictions(spark, data_dir).where("run_id = 'killed-1'").count() == 0
    # The next attempt of the same run id commits normally (the killed one's files stay unreferenced).
    ok(dlpipe("infer", *infer_args(data_dir), "--run-id", "killed-1"))
    assert predictions(spark, data_dir).where("run_id = 'killed-1'").count() == ROWS


# The tests below call the infer stage in this process, on this test session (database dlpipe_test), with the
# model and artifact of ``data_dir`` and Parquet inputs: each saves a process start.


def config(data_dir: Path, *extra: str):
    from dlpipe.pipelines.config import load_config

    return load_config("conf/demo.yaml", [*infer_args(data_dir, *extra)[3::2], "database=dlpipe_test"])


def failure(call) -> str:
    from dlpipe.pipelines.errors import PipelineError

    with pytest.raises(PipelineError) as err:
        call()
    return str(err.value)


def test_a_rerun_replaces_exactly_its_own_rows(spark, data_dir, tmp_path):
    from dlpipe.pipelines import infer

    source = write_input(spark, data_dir, tmp_path / "raw")
    table = "dlpipe_test.rerun_predictions"
    for run_id in ("rerun-other", "rerun-1"):
        infer.run(spark, config(data_dir, source, "infer.output_table=rerun_predictions"), run_id=run_id)
    first = spark.table(table).where("run_id = 'rerun-1'").agg(F.max("scored_at")).first()[0]
    # Again, for another logical date: the run's rows move to that run_date partition, none stay in the old one.
    infer.run(spark, config(data_dir, source, "infer.output_table=rerun_predictions", "infer.threshold=0.9"),
              run_id="rerun-1", run_date=dt.date(2026, 1, 15))
    rerun = spark.table(table).where("run_id = 'rerun-1'")
    assert rerun.count() == ROWS and rerun.where(F.col("scored_at") <= first).count() == 0
    assert [str(r[0]) for r in rerun.select("run_date").distinct().collect()] == ["2026-01-15"]
    assert rerun.where("predicted_label = 1 AND score < 0.9").count() == 0  # the new rows: the rerun's threshold
    assert spark.table(table).where("run_id = 'rerun-other'").count() == ROWS  # another run's rows untouched


def test_two_runs_into_different_partitions_commit_side_by_side(spark, data_dir, tmp_path):
    """Two scoring runs at once in one driver (threads), for two dates: both commit, each with all its rows."""
    from dlpipe.pipelines import infer

    cfg = config(data_dir, write_input(spark, data_dir, tmp_path / "raw"), "infer.output_table=concurrent")
    errors = []

    def score(day):
        try:
            infer.run(spark, cfg, run_id=f"day-{day}", run_date=dt.date(2026, 11, day))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=score, args=(day,)) for day in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    counts = {str(r["run_date"]): r["count"]
              for r in spark.table("dlpipe_test.concurrent").groupBy("run_date").count().collect()}
    assert counts == {"2026-11-01": ROWS, "2026-11-02": ROWS}


def test_unseen_categories_and_missing_values_are_scored_and_counted(spark, data_dir, tmp_path, capsys):
    from dlpipe.pipelines import infer

    def change(df):
        return (df.withColumn("trigger_id", F.when(F.col("row_id") % 10 == 0, F.lit("never-seen"))
                              .otherwise(F.col("trigger_id")))
                .withColumn("detector_region", F.when(F.col("row_id") % 10 == 1, F.lit("new-region"))
                            .otherwise(F.col("detector_region")))
                .withColumn("lepton_pt", F.when(F.col("row_id") % 10 == 2, F.lit(float("nan")))
                            .otherwise(F.col("lepton_pt"))))

    source = write_input(spark, data_dir, tmp_path / "odd", change)
    result = infer.run(spark, config(data_dir, source, "infer.output_table=odd_predictions"), run_id="odd-1")
    assert result.rows == ROWS
    assert result.out_of_vocabulary["detector_region"] == ROWS // 10  # a region never seen in training
    assert result.out_of_vocabulary["trigger_id"] >= ROWS // 10
    nulls = (spark.read.format("delta").load(table_path(data_dir, "raw_events"))
             .where("lepton_pt IS NULL AND row_id % 10 != 2").count())
    assert result.missing["lepton_pt"] == ROWS // 10 + nulls  # the NaNs plus the generator's other nulls, filled
    assert f"detector_region {ROWS // 10:,}" in capsys.readouterr().out
    scores = spark.table("dlpipe_test.odd_predictions")
    assert scores.count() == ROWS
    assert scores.where(F.isnan("score") | F.col("score").isNull()).count() == 0


def test_an_input_without_labels_is_scored_and_kept_columns_are_queried_with_sql(spark, data_dir, tmp_path):
    """New data has no label: it scores as the labelled rows do. ``infer.keep`` columns go beside the score, so a
    query groups by them; the labelled run in the same table keeps its label, the unlabelled one has it null."""
    from dlpipe.pipelines import infer

    table, keep = "dlpipe_test.kept_predictions", "infer.keep=[detector_region, run_period, label]"
    labelled = write_input(spark, data_dir, tmp_path / "labelled")
    infer.run(spark, config(data_dir, labelled, "infer.output_table=kept_predictions", keep), run_id="labelled")
    unlabelled = write_input(spark, data_dir, tmp_path / "unlabelled", lambda df: df.drop("label"))
    result = infer.run(spark, config(data_dir, unlabelled, "infer.output_table=kept_predictions", keep),
                       run_id="unlabelled")
    assert result.rows == ROWS

    scored = spark.table(table)
    assert scored.columns[:4] == ["row_id", "label", "detector_region", "run_period"]
    pairs = (scored.where("run_id = 'labelled'").alias("a")
             .join(scored.where("run_id = 'unlabelled'").alias("b"), "row_id")
             .select("a.score", "b.score", "a.label", "b.label", "a.run_period", "b.run_period").collect())
    assert len(pairs) == ROWS and all(r[0] == r[1] and r[4] == r[5] for r in pairs)  # the same scores, bit for bit
    assert {r[3] for r in pairs} == {None} and {r[2] for r in pairs} == {0, 1}

    raw = spark.read.format("delta").load(table_path(data_dir, "raw_events"))
    expected = {r["detector_region"]: r["count"] for r in raw.groupBy("detector_region").count().collect()}
    rows = spark.sql(f"SELECT detector_region, count(*) AS n, avg(score) AS mean FROM {table} "
                     "WHERE run_id = 'unlabelled' GROUP BY detector_region").collect()
    assert {r["detector_region"]: r["n"] for r in rows} == expected  # as in the input, nulls and all
    assert all(0.0 < r["mean"] < 1.0 for r in rows)

    for bad, message in [
        ("infer.keep=[no_such_column]", "infer.keep names column 'no_such_column', which parquet path"),
        ("infer.keep=[score]", "infer.keep names 'score', a column infer writes itself"),
    ]:
        assert failure(lambda: infer.run(spark, config(data_dir, unlabelled, "infer.output_table=kept_bad", bad))
                       ).startswith(message)
    assert not spark.catalog.tableExists("dlpipe_test.kept_bad")


def test_threshold_auto_scores_with_the_threshold_training_picked(spark, data_dir, tmp_path, capsys):
    """``infer.threshold: auto``: predicted_label at the model's F1 threshold, or at the one that predicts the
    training split's positive rate; a model without the rule's threshold is refused by name."""
    from dlpipe.pipelines import infer

    metadata = json.loads((data_dir / "models" / MODEL / "v1" / "metadata.json").read_text())
    picked = metadata["thresholds"]
    assert set(picked) == {"f1", "rate"} and all(0 < t < 1 for t in picked.values())
    kept = metadata["best_epoch"] or metadata["epochs_done"]  # the epoch whose weights the model has
    assert picked["f1"] == metadata["history"]["threshold_f1"][kept - 1]
    source = write_input(spark, data_dir, tmp_path / "raw")
    for rule in ("f1", "rate"):
        infer.run(spark, config(data_dir, source, "infer.output_table=auto_predictions", "infer.threshold=auto",
                                f"infer.threshold_rule={rule}"), run_id=f"auto-{rule}")
        rows = spark.table("dlpipe_test.auto_predictions").where(F.col("run_id") == f"auto-{rule}")
        assert rows.where((F.col("predicted_label") == 1) != (F.col("score") >= picked[rule])).count() == 0
        assert f"(score >= {picked[rule]:g} (auto))" in capsys.readouterr().out
    rate = spark.table("dlpipe_test.auto_predictions").where("run_id = 'auto-rate'").agg(F.avg("predicted_label"))
    assert abs(rate.first()[0] - metadata["train_positive_rate"]) < 0.03  # validation-picked, scored on all rows

    del metadata["thresholds"]
    model = data_dir / "models" / MODEL / "v1" / "metadata.json"
    original = model.read_text()
    model.write_text(json.dumps(metadata))
    try:
        message = failure(lambda: infer.scoring_model(config(data_dir, "infer.threshold=auto")))
    finally:
        model.write_text(original)
    assert message.startswith(f"model {MODEL} v1 has no f1 threshold")


def test_empty_input_writes_nothing_or_fails_by_config(spark, data_dir, tmp_path, capsys):
    from dlpipe.pipelines import infer

    source = write_input(spark, data_dir, tmp_path / "empty", lambda df: df.limit(0))
    result = infer.run(spark, config(data_dir, source, "infer.output_table=empty_predictions"))
    assert result.rows == 0 and result.table_version is None
    assert "has no rows: nothing scored, dlpipe_test.empty_predictions left as it is" in capsys.readouterr().out
    assert not spark.catalog.tableExists("dlpipe_test.empty_predictions")
    assert failure(lambda: infer.run(spark, config(data_dir, source, "infer.on_empty=fail"))) == (
        f"parquet path {tmp_path / 'empty'} has no rows to score (infer.on_empty: fail)")


def test_an_input_without_a_feature_column_fails_before_scoring(spark, data_dir, tmp_path):
    from dlpipe.pipelines import infer

    source = write_input(spark, data_dir, tmp_path / "narrow", lambda df: df.drop("jet1_pt"))
    message = failure(lambda: infer.run(spark, config(data_dir, source, "infer.output_table=narrow_predictions")))
    assert "jet1_pt" in message and message.endswith("nothing was scored")
    assert not spark.catalog.tableExists("dlpipe_test.narrow_predictions")


def test_drift_thresholds_for_a_feature_the_artifact_lacks_are_refused(spark, data_dir, tmp_path):
    from dlpipe.pipelines import infer

    source = write_input(spark, data_dir, tmp_path / "raw")
    message = failure(lambda: infer.run(spark, config(data_dir, source, "infer.output_table=typo_predictions",
                                                      "infer.drift.features={lepton_ptt: {psi: 0.5}}")))
    assert message.startswith("infer.drift.features names lepton_ptt, which feature artifact features/v1 does not "
                              "compare (its numeric and categorical features: lepton_eta, ") and message.endswith(
        "fix the name")
    assert not spark.catalog.tableExists("dlpipe_test.typo_predictions")


def test_missing_model_and_version_are_named(data_dir):
    from dlpipe.pipelines.infer import scoring_model

    assert failure(lambda: scoring_model(config(data_dir, "train.model_name=no_such_model"))) == (
        f"no trained model no_such_model under {data_dir / 'models' / 'no_such_model'}: run `dlpipe train` first")
    assert failure(lambda: scoring_model(config(data_dir, "infer.model_version=v9"))) == (
        f"model {MODEL} v9 not found at {data_dir / 'models' / MODEL / 'v9'}: train it first or fix the version")


def test_an_artifact_from_another_run_is_refused(data_dir):
    from dlpipe.pipelines.infer import scoring_model

    assert failure(lambda: scoring_model(config(data_dir, "infer.feature_version=v7"))) == (
        f"model {MODEL} v1 was trained on feature artifact features/v1, and infer.feature_version asks for v7: "
        "another artifact encodes the features differently. Unset infer.feature_version, or train a model on "
        "that artifact")

    artifact = data_dir / "artifacts" / "features" / "v1.json"
    original = artifact.read_text()
    refit = json.loads(original)
    refit["numeric"]["lepton_pt"]["center"] += 0.5  # what a refit on other data gives under the same version
    artifact.write_text(json.dumps(refit))
    try:
        message = failure(lambda: scoring_model(config(data_dir)))
    finally:
        artifact.write_text(original)
    assert message.startswith(f"feature artifact features/v1 is not the one model {MODEL} v1 was trained on")

    artifact.rename(artifact.with_suffix(".moved"))
    try:
        message = failure(lambda: scoring_model(config(data_dir)))
    finally:
        artifact.with_suffix(".moved").rename(artifact)
    assert message == f"feature artifact {artifact} not found: run `dlpipe featurize` first or fix the version"


def test_reject_policy_fails_with_the_count(spark, data_dir, tmp_path):
    """A model whose artifact rejects missing lepton_pt values, scoring an input with some: nothing is written."""
    from dlpipe.pipelines import infer

    folder = data_dir / "artifacts" / "features"
    artifact = json.loads((folder / "v1.json").read_text())
    for entry in artifact["spec"]["numeric"]:
        if entry["column"] == "lepton_pt":
            entry["missing"] = "reject"
    artifact["version"] = "v90"
    (folder / "v90.json").write_text(json.dumps(artifact))
    model = data_dir / "models" / MODEL
    shutil.copytree(model / "v1", model / "v90")
    metadata = json.loads((model / "v90" / "metadata.json").read_text())
    metadata.update(model_version="v90", feature_artifact={"table": "features", "version": "v90",
                                                           "sha256": artifact_digest(artifact)})
    (model / "v90" / "metadata.json").write_text(json.dumps(metadata))
    raw = spark.read.format("delta").load(table_path(data_dir, "raw_events"))
    nulls = raw.where("lepton_pt IS NULL").count() + raw.where("row_id < 5 AND lepton_pt IS NOT NULL").count()
    source = write_input(spark, data_dir, tmp_path / "nulls", lambda df: df.withColumn(
        "lepton_pt", F.when(F.col("row_id") < 5, F.lit(None)).otherwise(F.col("lepton_pt"))))
    try:
        message = failure(lambda: infer.run(spark, config(data_dir, source, "infer.model_version=v90",
                                                          "infer.output_table=rejected_predictions")))
    finally:
        shutil.rmtree(model / "v90")
        (folder / "v90.json").unlink()
    assert message == (
        f"parquet path {tmp_path / 'nulls'} has missing values (null, NaN or infinite) in columns whose "
        f"missing-value policy is reject (lepton_pt: {nulls:,}): nothing was scored. Clean the input, or fit the "
        "artifact with another policy")
    assert not spark.catalog.tableExists("dlpipe_test.rejected_predictions")


def test_a_table_name_that_is_not_an_identifier_is_refused(data_dir):
    out = dlpipe("infer", *infer_args(data_dir, "infer.output_table='p; DROP TABLE features'"))
    assert out.returncode == 2
    assert "infer.output_table" in last_line(out.stderr)


def _batch_sizes(batches):
    import pyarrow as pa

    for batch in batches:
        yield pa.RecordBatch.from_arrays([pa.array([batch.num_rows])], names=["rows"])


def test_scoring_batches_are_cut_by_rows_alone_and_the_session_settings_come_back(spark):
    from dlpipe.pipelines.infer import scoring_batches
    from dlpipe.spark_settings import spark_settings

    settings = scoring_batches(1_234)
    before = [spark.conf.get(key) for key in settings]
    with spark_settings(spark, settings):
        assert [spark.conf.get(key) for key in settings] == ["1234", "2147483647"]
        sizes = [r.rows for r in spark.range(0, 5_000, 1, 1).mapInArrow(_batch_sizes, "rows long").collect()]
    assert sizes == [1_234] * 4 + [64]
    assert [spark.conf.get(key) for key in settings] == before
