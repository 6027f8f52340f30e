"""The demo pipeline end to end on tiny data, as a user runs it: `dlpipe run` in its own process, then the tables
seen by name from other processes (`dlpipe sql`, `spark-sql`) and a stage under `spark-submit`."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.demo import BIN, DATE, REPO, ROWS, run, settings

pytestmark = pytest.mark.slow


def test_run_prints_auc_sql_rows_and_locations(pipeline_run):
    data_dir, stdout = pipeline_run
    assert "evaluate: run e2e-1 on" in stdout and "AUC" in stdout
    assert f"predictions of run e2e-1: {ROWS:,} rows" in stdout and "dlpipe sql \"SELECT predicted_label" in stdout
    assert f"outputs under {data_dir}" in stdout
    assert f"report: wrote {data_dir / 'runs' / 'e2e-1' / 'report.html'}" in stdout  # every run writes its report


def test_predictions_table(spark, pipeline_run):
    data_dir, _ = pipeline_run
    predictions = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "predictions"))
    predictions = predictions.where(F.col("run_id") == "e2e-1")  # later tests here add runs
    assert predictions.dtypes == [
        ("row_id", "bigint"), ("label", "int"), ("score", "float"), ("predicted_label", "int"), ("model_name", "string"),
        ("model_version", "string"), ("feature_version", "string"), ("input_version", "bigint"),
        ("run_id", "string"), ("scored_at", "timestamp"), ("run_date", "date"),
    ]
    assert predictions.count() == ROWS
    assert predictions.select("row_id").distinct().count() == ROWS
    row = predictions.agg(F.min("score"), F.max("score"), F.countDistinct("run_id"), F.first("model_name")).first()
    assert 0.0 <= row[0] < row[1] <= 1.0 and row[2] == 1 and row[3] == "higgs_mlp"


def test_auc_beats_chance_clearly(spark, pipeline_run):
    data_dir, _ = pipeline_run
    metrics = (spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "metrics"))
               .where((F.col("run_id") == "e2e-1") & F.col("slice_columns").isNull()).first())
    assert metrics["split"] == "validation" and 600 < metrics["rows"] < 1000
    assert metrics["auc"] > 0.65, metrics
    assert metrics["reference_auc"] > metrics["auc"] - 0.02  # nothing beats the true probability by much
    cells = [metrics[c] for c in ("true_positives", "false_positives", "true_negatives", "false_negatives")]
    assert sum(cells) == metrics["rows"] and metrics["weight_column"] is None
    assert metrics["accuracy"] == pytest.approx((cells[0] + cells[2]) / metrics["rows"])
    for plot in ("roc", "scores", "calibration", "ams"):  # PNG files, as the metrics row says
        assert (Path(metrics["plots"]) / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ams_of_the_best_cut_equals_the_one_worked_out_from_the_rows(spark, pipeline_run):
    """The demo's event weights: evaluate's AMS at its threshold, against s and b summed here from the validation
    rows, each class's weights scaled to its total over the whole input (as in the HiggsML challenge)."""
    from dlpipe.pipelines.binary_metrics import ams

    data_dir, stdout = pipeline_run
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    metrics = (spark.read.format("delta").load(str(warehouse / "metrics"))
               .where((F.col("run_id") == "e2e-1") & F.col("slice_columns").isNull()).first())
    assert metrics["event_weight_column"] == "event_weight" and 0 < metrics["ams_threshold"] < 1
    raw = spark.read.format("delta").load(str(warehouse / "raw_events")).select("row_id", "label", "event_weight")
    validation = spark.read.format("delta").load(str(warehouse / "features")).where("split = 'validation'")
    rows = (spark.read.format("delta").load(str(warehouse / "predictions")).where(F.col("run_id") == "e2e-1")
            .select("row_id", "score").join(validation.select("row_id"), "row_id").join(raw, "row_id"))
    kept = F.col("score") >= metrics["ams_threshold"]
    sums = {y: rows.where(F.col("label") == y).agg(F.sum("event_weight"), F.sum(F.when(kept, F.col("event_weight"))))
            .first() for y in (0, 1)}
    totals = {r["label"]: r["w"] for r in raw.groupBy("label").agg(F.sum("event_weight").alias("w")).collect()}
    s = sums[1][1] * totals[1] / sums[1][0]
    b = sums[0][1] * totals[0] / sums[0][0]
    assert metrics["ams"] == pytest.approx(float(ams(s, b)), rel=1e-6) and metrics["ams"] > 0
    assert f"AMS (event weights event_weight, b_r 10, scaled to the whole input): {metrics['ams']:.4f}" in stdout


def test_metrics_per_detector_region_match_each_regions_rows(spark, pipeline_run):
    """The demo slices by detector_region: a metrics row per region (null too), whose rows add up to the overall
    row's, each AUC equal to scikit-learn's on that region's validation predictions."""
    from sklearn.metrics import roc_auc_score

    from dlpipe.features.synthetic import REGIONS

    data_dir, stdout = pipeline_run
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    metrics = spark.read.format("delta").load(str(warehouse / "metrics")).where(F.col("run_id") == "e2e-1")
    overall = metrics.where(F.col("slice_columns").isNull()).first()
    slices = {r["slice_values"]: r for r in metrics.where(F.col("slice_columns") == "detector_region").collect()}
    assert set(slices) == {f"detector_region={v}" for v in (*REGIONS, "null")}
    assert sum(r["rows"] for r in slices.values()) == overall["rows"]
    raw = spark.read.format("delta").load(str(warehouse / "raw_events")).select("row_id", "label", "detector_region")
    validation = spark.read.format("delta").load(str(warehouse / "features")).where("split = 'validation'")
    rows = (spark.read.format("delta").load(str(warehouse / "predictions")).where(F.col("run_id") == "e2e-1")
            .select("row_id", "score").join(validation.select("row_id"), "row_id").join(raw, "row_id")).toPandas()
    for region in ("barrel", "endcap_a", "forward"):
        mine = rows[rows["detector_region"] == region]
        found = slices[f"detector_region={region}"]
        assert found["rows"] == len(mine)
        assert found["auc"] == pytest.approx(roc_auc_score(mine["label"], mine["score"]), abs=2e-3)
        assert found["slice_flagged"] == (found["auc"] < overall["auc"] - 0.05)
    assert f"  slices: 6 of detector_region; AUC more than 0.05 below the overall {overall['auc']:.4f}: " in stdout


def test_drift_alerts_on_the_shifted_columns_alone_and_fails_the_stage_when_asked(spark, pipeline_run):
    """The demo's own input drifts nowhere. A regeneration with another seed, lepton_pt scaled by 1.5 (an energy
    scale off by half) and 30% of run_period's values new: infer alerts on those two features and on no other,
    writes the predictions and the statistics, then fails the stage (infer.drift.fail)."""
    data_dir, output = pipeline_run
    assert "  drift: no feature crossed its threshold (31 features compared with the training split" in output
    out = dlpipe("run", "--stages", "generate,infer", "--run-id", "e2e-drifted", "--date", DATE, data_dir=data_dir,
                 ok=False, generate__seed="99", generate__output_table="drifted_events",
                 infer__input__table="drifted_events", generate__shift__lepton_pt__scale="1.5",
                 generate__shift__run_period__new_values="0.3", infer__drift__fail="true")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "dlpipe run: error: drift: 2 features crossed their thresholds (infer.drift.fail is true); the predictions "
        "of run e2e-drifted are written, see dlpipe.drift for the statistics")
    assert "  drift: 2 features crossed a threshold (details: dlpipe.drift, run e2e-drifted):" in out.stdout
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    drift = spark.read.format("delta").load(str(warehouse / "drift"))
    alerts = {(r.feature, r.statistic) for r in drift.where("run_id = 'e2e-drifted' AND alert").collect()}
    assert {feature for feature, _ in alerts} == {"lepton_pt", "run_period"}, alerts
    assert {("lepton_pt", "psi"), ("lepton_pt", "wasserstein"), ("run_period", "unseen_share")} <= alerts
    demo = drift.where("run_id = 'e2e-1'")
    assert demo.where("alert").count() == 0 and demo.select("feature").distinct().count() == 31
    predictions = spark.read.format("delta").load(str(warehouse / "predictions"))
    assert predictions.where("run_id = 'e2e-drifted'").count() == ROWS


def test_model_and_artifact_written(pipeline_run):
    data_dir, _ = pipeline_run
    assert (data_dir / "models" / "higgs_mlp" / "v1" / "model.keras").is_file()
    assert (data_dir / "models" / "higgs_mlp" / "v1" / "metadata.json").is_file()
    assert (data_dir / "artifacts" / "features" / "v1.json").is_file()


def test_dlpipe_sql_sees_table_by_name_and_fails_in_one_line(pipeline_run, tmp_path):
    """A query's result saved as CSV, and a failed query: no Spark start-up warnings, no stack trace, one line."""
    data_dir, _ = pipeline_run
    saved = tmp_path / "counts.csv"
    out = run([str(BIN / "dlpipe"), "sql", "SELECT count(*) AS n FROM predictions WHERE run_id = 'e2e-1'",
               "--set", f"data_dir={data_dir}", "--output", str(saved)])
    assert saved.read_text() == f'"n"\n{ROWS}\n'
    for noise in ("loopback address", "NativeCodeLoader", "spark.local.dir"):
        assert noise not in out.stderr, out.stderr
    failed = subprocess.run([str(BIN / "dlpipe"), "sql", "SELECT nope FROM predictions", "--set", f"data_dir={data_dir}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    lines = [line for line in failed.stderr.splitlines() if not line.startswith("WARNING: Using incubator modules")]
    assert len(lines) == 1 and lines[0].startswith("dlpipe sql: error: SQL failed: [UNRESOLVED_COLUMN"), failed.stderr


def test_spark_sql_from_another_process(pipeline_run):
    data_dir, _ = pipeline_run
    out = run([str(BIN / "spark-sql"), "-e", "SELECT count(*) FROM dlpipe.predictions WHERE run_id = 'e2e-1'"],
              env={"SPARK_CONF_DIR": str(data_dir / "conf"), "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert out.stdout.strip().splitlines()[-1] == str(ROWS)


def test_stage_under_spark_submit(spark, pipeline_run):
    data_dir, _ = pipeline_run
    run([str(BIN / "spark-submit"), "jobs/evaluate.py", *settings(data_dir), "--run-id", "e2e-1"],
        env={"PATH": f"{BIN}:{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable})
    metrics = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "metrics"))
    # evaluating a run again replaces its rows: the overall one and one per detector_region value (and null)
    assert metrics.where(F.col("run_id") == "e2e-1").count() == 1 + 6


# ------------------------------------------------------------------ scheduled runs: skip, resume, lineage, report
# These continue from run e2e-1 above: a scheduler's view of the same data folder. Each test asks for the runs it
# needs as fixtures, so each runs alone too (pytest -k lineage).


def dlpipe(*args: str, data_dir: Path, ok: bool = True, **sets: str) -> subprocess.CompletedProcess:
    extra = [arg for key, value in sets.items() for arg in ("--set", f"{key.replace('__', '.')}={value}")]
    command = [str(BIN / "dlpipe"), *args, *settings(data_dir), *extra]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    if ok:
        assert out.returncode == 0, f"{command} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def stage_lines(stdout: str) -> dict[str, str]:
    """stage -> its line in the run's summary table."""
    table = stdout[stdout.index("stages in"):]
    return {line.split()[0]: line for line in table.splitlines()[1:]
            if line.strip() and line.split()[0] in ("generate", "featurize", "train", "infer", "evaluate")}


def test_a_rerun_for_the_same_date_skips_every_stage(pipeline_run):
    data_dir, _ = pipeline_run
    out = dlpipe("run", "--run-id", "e2e-retry", "--date", DATE, data_dir=data_dir)
    for stage in ("generate", "featurize", "train", "infer", "evaluate"):
        assert f"{stage}: skipped: inputs and settings unchanged since run e2e-1" in out.stdout
        assert "skipped (run e2e-1)" in stage_lines(out.stdout)[stage]
    assert "starting" not in out.stdout
    assert f"predictions of run e2e-1: {ROWS:,} rows" in out.stdout  # the predictions it reuses


def test_a_run_id_used_with_another_config_is_refused(pipeline_run):
    data_dir, _ = pipeline_run
    out = dlpipe("run", "--run-id", "e2e-1", "--date", DATE, data_dir=data_dir, ok=False, train__learning_rate="0.01")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "dlpipe run: error: run e2e-1 was run with a different config (train.learning_rate 0.001 -> 0.01): "
        "use a new --run-id, or --force to redo it with this config")


@pytest.fixture(scope="module")
def killed_and_resumed_run(pipeline_run):
    """Run e2e-model2 with another network, killed in infer, then the same command again: (what the killed
    attempt printed, the resumed attempt's output)."""
    data_dir, _ = pipeline_run
    args = [str(BIN / "dlpipe"), "run", *settings(data_dir), "--run-id", "e2e-model2", "--date", DATE,
            "--set", "train.hidden_units=[32, 16]"]
    job = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    seen = []
    for line in job.stdout:
        seen.append(line)
        if line.startswith("infer: starting"):
            time.sleep(2.0)  # inside the stage, well before its one commit (scoring alone takes longer)
            break
    assert job.poll() is None, "the run ended before it could be killed:\n" + "".join(seen[-40:])
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(60)
    killed = "".join(seen)
    for stage in ("generate", "featurize"):
        assert f"{stage}: skipped: inputs and settings unchanged since run e2e-1" in killed
    assert "train: starting" in killed  # the new network is trained
    return killed, run(args)


def test_a_changed_model_config_reruns_train_and_a_run_killed_in_infer_resumes_there(spark, pipeline_run,
                                                                                      killed_and_resumed_run):
    """One run with another network: featurize is reused, train runs; the run is killed in infer; the same command
    again resumes it in infer (train not redone), and scores with the new model."""
    data_dir, _ = pipeline_run
    _, out = killed_and_resumed_run
    lines = stage_lines(out.stdout)
    assert "skipped (run e2e-1)" in lines["generate"] and "skipped (run e2e-1)" in lines["featurize"]
    assert "train: skipped: inputs and settings unchanged since run e2e-model2" in out.stdout  # not trained again
    for stage in ("infer", "evaluate"):
        assert f"{stage}: starting" in out.stdout and "succeeded" in lines[stage]
    predictions = spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "predictions"))
    model2 = predictions.where(F.col("run_id") == "e2e-model2")
    assert model2.count() == ROWS and [r[0] for r in model2.select("model_version").distinct().collect()] == ["v2"]

    log = (data_dir / "runs" / "e2e-model2" / "run.log").read_text()  # both attempts, without the progress bar
    assert log.count("infer: starting") == 2 and "train: epoch 4/4" in log and "[Stage " not in log

    # `dlpipe runs`: one line per stage (its latest attempt); with --run-id every attempt, the killed one too
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in dlpipe("runs", data_dir=data_dir).stdout.splitlines()
             if line.startswith("| e2e-model2 ")]
    assert [(c[2], c[3], c[4]) for c in cells] == [
        ("generate", "skipped", "2"), ("featurize", "skipped", "2"), ("train", "skipped", "2"),
        ("infer", "succeeded", "2"), ("evaluate", "succeeded", "1")]
    detail = dlpipe("runs", "--run-id", "e2e-model2", data_dir=data_dir).stdout
    infer = [[c.strip() for c in line.split("|")[1:-1]] for line in detail.splitlines() if "| infer " in line]
    assert [c[3] for c in infer] == ["running", "succeeded"]
    assert "read  model higgs_mlp v2" in detail and "wrote table dlpipe.predictions version" in detail


def test_lineage_of_the_predictions_goes_back_to_the_raw_table(pipeline_run, killed_and_resumed_run):
    data_dir, _ = pipeline_run
    out = dlpipe("lineage", "predictions", data_dir=data_dir).stdout.strip().splitlines()
    tree = out[out.index(next(line for line in out if line.startswith("table dlpipe.predictions"))):]
    assert tree[0].startswith("table dlpipe.predictions version") and "<- infer, run e2e-model2" in tree[0]
    assert tree[1].startswith("  model higgs_mlp v2  <- train, run e2e-model2")
    assert any(line.startswith("    table dlpipe.features version 0  <- featurize, run e2e-1") for line in tree)
    assert any(line.strip().startswith("table dlpipe.raw_events version 0  <- generate, run e2e-1") for line in tree)


def test_report_renders_in_chromium(spark, pipeline_run, killed_and_resumed_run, tmp_path):
    data_dir, _ = pipeline_run
    chromium = shutil.which("chromium")
    assert chromium, "the report test needs Debian's chromium package: `make install` installs it"
    dlpipe("report", "e2e-model2", data_dir=data_dir)
    page = data_dir / "runs" / "e2e-model2" / "report.html"
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=10000"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images-loaded="9"' in dom and 'data-images-broken="0"' in dom, dom[:500]  # 5 + 4 of drift
    metrics = (spark.read.format("delta").load(str(data_dir / "warehouse" / "dlpipe.db" / "metrics"))
               .where((F.col("run_id") == "e2e-model2") & F.col("slice_columns").isNull()).first())
    assert f"AUC {metrics['auc']:.4f}" in dom and f"{ROWS:,} rows scored" in dom
    for text in ("train_rows", "Missing values per column", "learning_rate", "evaluate",
                 "approximate median significance", "<h2>Drift</h2>", "None crossed its threshold.",
                 "training and scored distributions", "<h2>Slices</h2>", "detector_region=barrel",
                 "ROC curve: higgs_mlp v2, run e2e-model2, validation split",
                 "calibration: higgs_mlp v2, run e2e-model2, validation split"):
        assert text in dom, text
    config = dom[dom.index("<h2>Config</h2>"):]
    assert "featurize:" in config and "evaluate:" in config and "sql_server:" not in config and "tune:" not in config
    shot = data_dir / "runs" / "e2e-model2" / "report.png"
    subprocess.run([*browser, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    unknown = dlpipe("report", "no-such-run", data_dir=data_dir, ok=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1] == (
        "dlpipe report: error: no run no-such-run in dlpipe.runs: see `dlpipe runs` for the run ids")


def test_an_alias_names_the_version_a_scheduled_infer_scores_with(spark, pipeline_run, killed_and_resumed_run):
    """`dlpipe models promote` points production at v1; a scheduled infer with infer.model_version: production
    scores with v1 and says so; the alias moves to v2 (history kept, lineage and `dlpipe models` show it); an
    alias that names nothing fails in one line."""
    data_dir, _ = pipeline_run
    promoted = dlpipe("models", "promote", "higgs_mlp", "v1", "--alias", "production", data_dir=data_dir)
    assert "models: higgs_mlp alias production -> v1, set by " in promoted.stdout
    out = dlpipe("run", "--stages", "infer", "--run-id", "e2e-alias", "--date", DATE, data_dir=data_dir,
                 infer__model_version="production")
    assert "with higgs_mlp v1 (alias production)" in out.stdout
    warehouse = data_dir / "warehouse" / "dlpipe.db"
    scored = spark.read.format("delta").load(str(warehouse / "predictions")).where(F.col("run_id") == "e2e-alias")
    assert [tuple(r) for r in scored.groupBy("model_version").count().collect()] == [("v1", ROWS)]

    moved = dlpipe("models", "promote", "higgs_mlp", "2", "--alias", "production", data_dir=data_dir)
    assert "models: higgs_mlp alias production -> v2 (was v1)" in moved.stdout
    history = spark.read.format("delta").load(str(warehouse / "model_aliases")).orderBy("moved_at").collect()
    assert [(r["model_version"], r["previous_version"]) for r in history] == [("v1", None), ("v2", "v1")]
    listing = dlpipe("models", "higgs_mlp", data_dir=data_dir).stdout
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in listing.splitlines()
             if line.startswith("| higgs_mlp ")]
    rows = {cells[1]: cells for cells in table}
    assert set(rows) == {"v1", "v2"} and rows["v2"][7] == "production" and rows["v1"][7] == ""
    assert rows["v1"][3] == "e2e-1" and rows["v1"][4] == "dlpipe.features version 0, artifact v1"
    assert 0.5 < float(rows["v1"][5]) < 1
    tree = dlpipe("lineage", "higgs_mlp", "--version", "production", data_dir=data_dir).stdout
    assert "model higgs_mlp v2 (aliases production)  <- train, run e2e-model2" in tree

    unknown = dlpipe("infer", "--run-id", "e2e-staging", data_dir=data_dir, ok=False, infer__model_version="staging")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1] == (
        "dlpipe infer: error: model higgs_mlp has no alias 'staging' (its aliases: production): point it at a "
        "version with `dlpipe models promote higgs_mlp VERSION --alias staging`, or set infer.model_version to a "
        "version")
