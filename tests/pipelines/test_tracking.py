"""The runs table's pure parts: config hashing and differences, latest attempts, lineage walking, the summary
table and the HTML report, on hand-made records; appending and compacting on the test session (the rest of the
Spark side is tested end to end in tests/test_end_to_end.py)."""
import dataclasses
import datetime as dt
import json

from dlpipe.pipelines import lineage, report
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.run import RunResult, StageOutcome, summary_table
from dlpipe.pipelines import tracking
from dlpipe.pipelines.tracking import StageRecord, config_document, differences, digest, latest_per_stage

T0 = dt.datetime(2026, 11, 27, 2, 0, 0)


def record(stage, status="succeeded", run_id="r1", attempt="a1", minute=0, inputs=(), outputs=(), **more):
    return StageRecord(run_id=run_id, stage=stage, attempt=attempt, status=status, run_date=dt.date(2026, 11, 26),
                       started_at=T0 + dt.timedelta(minutes=minute), stage_key="k", config_hash="c",
                       inputs=list(inputs), outputs=list(outputs),
                       ended_at=None if status == "running" else T0 + dt.timedelta(minutes=minute, seconds=30), **more)


def test_config_hash_ignores_how_a_run_executes_and_names_what_changed():
    base = config_document(Config())
    assert digest(config_document(Config(spark=Config().spark.__class__(master="local[2]")))) == digest(base)
    changed = json.loads(json.dumps(base))
    changed["train"]["learning_rate"] = 0.01
    assert digest(changed) != digest(base)
    assert differences(base, changed) == ["train.learning_rate 0.001 -> 0.01"]
    assert differences({"a": [1, 2]}, {"a": [1, 2], "b": None}) == []


def test_latest_per_stage_keeps_the_final_row_of_each_attempt():
    rows = [record("infer", "running", attempt="a1", minute=1), record("infer", "running", attempt="a2", minute=5),
            record("infer", "succeeded", attempt="a2", minute=5), record("train", minute=0)]
    latest = latest_per_stage(sorted(rows, key=lambda r: r.started_at, reverse=True))
    assert sorted((r.stage, r.attempt, r.status) for r in latest) == [
        ("infer", "a1", "running"), ("infer", "a2", "succeeded"), ("train", "a1", "succeeded")]


def test_lineage_follows_exact_versions_back_to_an_unrecorded_input():
    raw = {"kind": "table", "name": "db.raw", "version": 0}
    features_v0, features_v1 = ({"kind": "table", "name": "db.features", "version": v} for v in (0, 1))
    history = [  # newest first, as records() returns them
        record("train", run_id="r2", minute=9, inputs=[features_v0],
               outputs=[{"kind": "model", "name": "m", "version": "v2", "path": "/x"}]),
        record("featurize", run_id="r2", minute=8, inputs=[{"kind": "table", "name": "db.raw", "version": 1}],
               outputs=[features_v1]),
        record("featurize", run_id="r1", minute=1, inputs=[raw], outputs=[features_v0]),
    ]
    text = lineage.lines(history, {"kind": "model", "name": "m", "version": "v2"})
    assert text[0].startswith("model m v2  <- train, run r2")
    assert text[1].startswith("  table db.features version 0  <- featurize, run r1")  # v0, not the newer v1
    assert text[2] == "    table db.raw version 0  <- not written by a recorded stage (an input of the pipeline)"


def test_summary_table_lines_up_the_stages():
    result = RunResult("r1", dt.date(2026, 11, 26), seconds=61.0)
    result.outcomes["featurize"] = StageOutcome("featurize", "skipped", 1.2, 0.0, 100_000, {}, "r0")
    result.outcomes["train"] = StageOutcome("train", "succeeded", 40.0, 38.5, 80_000, {"val_auc": 0.78912})
    result.outcomes["infer"] = StageOutcome("infer", "failed", 3.5, 2.9, None, {})
    lines = summary_table(result).splitlines()
    assert lines[1] == "run r1 (run_date 2026-11-26): 3 stages in 61.0s"
    assert lines[2].split() == ["stage", "status", "seconds", "rows", "key", "metric"]
    assert lines[4].split() == ["featurize", "skipped", "(run", "r0)", "1.2", "100,000"]
    assert lines[5].split() == ["train", "succeeded", "40.0", "80,000", "val_auc", "0.7891"]
    assert lines[6].split() == ["infer", "failed", "3.5"]


def test_report_inlines_the_figures_and_shows_the_numbers(tmp_path):
    png = tmp_path / "roc.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    plots = {"kind": "plots", "name": "evaluation", "run_id": "r1", "roc": str(png), "scores": str(png),
             "calibration": str(tmp_path / "missing.png")}
    entries = [
        record("evaluate", minute=3, outputs=[plots], rows=10_113, metrics={"auc": 0.7894, "accuracy": 0.706,
                                                                          "log_loss": 0.5568}),
        record("infer", "failed", minute=2, message="model m v9 not found"),
    ]
    entries[0].config = json.dumps({"train": {"learning_rate": 0.001}})
    page, figures = report.render(Config(), "r1", entries)
    assert figures == 2  # the missing calibration plot is left out, not a broken image
    assert page.count("data:image/png;base64,") == 2 and "missing.png" not in page
    assert "AUC 0.7894, accuracy 0.7060, log loss 0.5568" in page
    assert "failed: model m v9 not found" in page and "learning_rate: 0.001" in page


def test_report_shows_training_curves_at_their_size_and_no_negative_zero(tmp_path):
    png = tmp_path / "curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    (tmp_path / "metadata.json").write_text(json.dumps({"training_curves": "curves.png"}))
    model = {"kind": "model", "name": "m", "version": "v1", "path": str(tmp_path)}
    drift = {"kind": "drift", "name": "dlpipe.drift", "run_id": "r1", "features": 1, "distributions": {},
             "measures": [{"feature": "x", "statistic": "missing_share", "value": -0.00001, "threshold": 0.1,
                           "alert": False}]}
    page, _ = report.render(Config(), "r1", [record("train", outputs=[model]),
                                             record("infer", minute=1, outputs=[drift])])
    assert '<figure class="wide"><img alt="training curves: m v1"' in page
    assert '<td>x</td><td>missing_share</td><td class="n">0.0000</td>' in page


def test_rows_append_one_file_per_commit_and_compact_as_the_table_grows(spark, test_config):
    cfg = dataclasses.replace(test_config, runs_table="runs_compaction")
    table = tracking.runs_table(cfg)
    files = lambda: spark.sql(f"DESCRIBE DETAIL {table}").first()["numFiles"]  # noqa: E731
    tracking.append(spark, cfg, [record("featurize", run_id="c1"), record("train", "running", run_id="c1", minute=1)])
    tracking.append(spark, cfg, [record("train", run_id="c1", minute=1)])
    assert files() == 2
    assert [(r.stage, r.status) for r in tracking.records(spark, cfg, where="run_id = 'c1'")] == [
        ("train", "succeeded"), ("train", "running"), ("featurize", "succeeded")]
    assert not tracking.compact(spark, cfg, 3, tracking.COMPACT_EVERY - 1) and files() == 2
    assert tracking.compact(spark, cfg, tracking.COMPACT_EVERY - 1, tracking.COMPACT_EVERY + 2) and files() == 1
    assert len(tracking.records(spark, cfg)) == 3
