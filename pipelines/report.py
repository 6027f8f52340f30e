"""``dlpipe report RUN_ID``: one self-contained HTML file about a run (images inlined, no external files).

Everything comes from what the run recorded: its rows in the runs table (config, timings, rows, metrics, the
outputs of skipped stages point at the run that made them), the feature artifact's fit report, the model's
training curves, the evaluation plots and the scored input's drift.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml
from pyspark.sql import SparkSession

from dlpipe.pipelines.config import STAGES, Config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.run_id import run_folder
from dlpipe.pipelines.tracking import StageRecord, latest_per_stage, records, runs_table

SPLITS = ("train", "validation", "test")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; } img { max-width: 520px; }
figure.wide img { max-width: 100%; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.failed { color: #b00; } .skipped { color: #777; }
"""

_SCRIPT = """<script>
// Say on the page when a figure did not load (the counts are also what the report's browser test reads).
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(img => !(img.complete && img.naturalWidth > 0));
  document.body.dataset.imagesLoaded = images.length - broken.length;
  document.body.dataset.imagesBroken = broken.length;
  broken.forEach(img => img.insertAdjacentText("afterend", "(this figure did not load)"));
});
</script>"""


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{html.escape(str(c))}</td>' if i in numeric else f"<td>{html.escape(str(c))}</td>"
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, alt: str, wide: bool = False) -> str:
    """A figure; ``wide``: a figure of several panels, shown at its own size instead of a column's width (its text
    then reads as large as the other figures')."""
    data = base64.b64encode(path.read_bytes()).decode()
    kind = ' class="wide"' if wide else ""
    return (f'<figure{kind}><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{html.escape(alt)}</figcaption></figure>')


def _output(stages: dict[str, StageRecord], stage: str, kind: str) -> dict | None:
    record = stages.get(stage)
    return next((o for o in record.outputs if o["kind"] == kind), None) if record else None


def _fixed(value: float) -> str:
    """Four decimals, a value that rounds to zero shown as 0.0000 (not -0.0000)."""
    text = f"{value:.4f}"
    return "0.0000" if float(text) == 0 else text


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return f"{int(value):,}"


def timings(stages: dict[str, StageRecord]) -> str:
    rows = []
    for stage, r in stages.items():
        status = f"skipped (reused run {r.reused_run})" if r.status == "skipped" else r.status
        if r.status == "failed":
            status += f": {r.message}"
        metrics = ", ".join(f"{k} {_number(v)}" for k, v in r.metrics.items())
        rows.append([stage, status, f"{r.started_at:%Y-%m-%d %H:%M:%S}", f"{r.seconds:.1f}" if r.seconds is not None else "running",
                     _number(r.rows), metrics])
    return _table(["stage", "status", "started (UTC)", "seconds", "rows", "metrics"], rows, {3, 4})


def feature_summary(stages: dict[str, StageRecord]) -> str:
    """Rows per split, then missing values and categorical values folded into id 0: per split as fitting saw them,
    and in the input the run scored."""
    parts = []
    artifact = _output(stages, "featurize", "artifact")
    scored = _output(stages, "infer", "table") or {}
    report = None
    if artifact and artifact.get("path") and Path(artifact["path"]).is_file():
        report = json.loads(Path(artifact["path"]).read_text())["report"]
        parts.append(f"<p>Feature artifact {html.escape(artifact['name'])} {html.escape(artifact['version'])}: rows and "
                     "positive labels per split.</p>")
        parts.append(_table(["split", "rows", "positive"],
                            [[s, _number(report["rows"].get(s, 0)), _number(report["positives"].get(s, 0))] for s in SPLITS],
                            {1, 2}))
    where = (f"scored input (run {scored['run_id']}, {_number(stages['infer'].rows)} rows)" if scored else None)
    missing_fit = report["missing"] if report else {}
    missing_scored = scored.get("missing", {})
    columns = list(dict.fromkeys([*missing_fit, *missing_scored]))
    rows = [[c, *(_number(missing_fit.get(c, {}).get(s, 0)) for s in SPLITS if report),
             *([_number(missing_scored.get(c, 0))] if where else [])] for c in columns]
    rows = [r for r in rows if any(v not in ("0", "") for v in r[1:])]
    if rows:
        parts.append("<p>Missing values per column, filled by the fitted policy:</p>")
        parts.append(_table(["column", *(SPLITS if report else ()), *([where] if where else [])], rows,
                            set(range(1, 5))))
    other = report.get("other", {}) if report else {}
    outside = scored.get("out_of_vocabulary", {})
    columns = list(dict.fromkeys([*other, *outside]))
    if columns:
        rows = [[c, *(_number(other.get(c, {}).get(s, 0)) for s in SPLITS if report),
                 *(_number(report["unseen"].get(c, {}).get(s, 0)) for s in SPLITS[1:] if report),
                 *([_number(outside.get(c, 0))] if where else [])] for c in columns]
        headers = ["column", *(f"id 0, {s}" for s in SPLITS if report), *(f"unseen, {s}" for s in SPLITS[1:] if report),
                   *([f"id 0, {where}"] if where else [])]
        parts.append("<p>Categorical values mapped to the reserved id 0 (too rare to keep, or never seen in "
                     "training), per split and in the scored input:</p>")
        parts.append(_table(headers, rows, set(range(1, 7))))
    return "\n".join(parts) or "<p>No feature or scoring stage in this run.</p>"


def figures(stages: dict[str, StageRecord]) -> tuple[str, int]:
    shown = []
    model = _output(stages, "train", "model")
    if model:
        meta_path = Path(model["path"]) / "metadata.json"
        if meta_path.is_file():
            curves = Path(model["path"]) / json.loads(meta_path.read_text())["training_curves"]
            if curves.is_file():
                shown.append(_image(curves, f"training curves: {model['name']} {model['version']}", wide=True))
    plots = _output(stages, "evaluate", "plots")
    titles = (("roc", "ROC curve"), ("scores", "score distribution per class"), ("calibration", "calibration"),
              ("ams", "approximate median significance against the score threshold"))
    of = f": {plots['title']}" if plots and plots.get("title") else ""
    for kind, title in titles:
        if plots and plots.get(kind) and Path(plots[kind]).is_file():
            shown.append(_image(Path(plots[kind]), title + of))
    return '<div class="figures">' + "\n".join(shown) + "</div>", len(shown)


def slices_section(stages: dict[str, StageRecord]) -> str:
    """The evaluation's metrics per slice, flagged ones first."""
    found = _output(stages, "evaluate", "slices")
    if not found:
        return ""
    overall = stages["evaluate"].metrics.get("auc")
    rows = [[s["columns"], s["values"], _number(s["rows"]), "" if s["auc"] is None else f"{s['auc']:.4f}",
             f"{s['accuracy']:.4f}", f"{s['log_loss']:.4f}", "flagged" if s["flagged"] else ""]
            for s in sorted(found["slices"], key=lambda s: (not s["flagged"], s["columns"], -s["rows"]))]
    flagged = sum(s["flagged"] for s in found["slices"])
    return (f"<h2>Slices</h2>\n<p>Metrics per slice of the evaluated rows; {flagged} of {len(rows)} flagged (AUC "
            f"more than {found['margin']:g} below the overall {overall:.4f}).</p>\n"
            + _table(["columns", "values", "rows", "AUC", "accuracy", "log loss", "flag"], rows, {2, 3, 4, 5}))


def drift_section(stages: dict[str, StageRecord], folder: Path) -> tuple[str, int]:
    """The scored input against the training split: the most drifted features' statistics, and their
    distributions plotted into ``folder``."""
    from dlpipe.pipelines.plots import save_drift

    found = _output(stages, "infer", "drift")
    if not found:
        return "", 0
    measures = found["measures"]
    alerting = sorted({m["feature"] for m in measures if m["alert"]})
    verdict = (f"{len(alerting)} crossed a threshold: {', '.join(alerting)}." if alerting
               else "None crossed its threshold.")
    worst: dict[str, float] = {}
    for m in measures:  # features in order of their most severe statistic (value over threshold)
        worst[m["feature"]] = max(worst.get(m["feature"], 0.0), abs(m["value"]) / m["threshold"])
    rows = [[m["feature"], m["statistic"], _fixed(m["value"]), f"{m['threshold']:g}", "alert" if m["alert"] else ""]
            for m in sorted(measures, key=lambda m: (-worst[m["feature"]], m["feature"], m["statistic"]))]
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for feature, shown in found.get("distributions", {}).items():
        path = save_drift(shown["labels"], (shown["training"], shown["scored"]), tuple(shown["missing"]),
                          folder / f"drift-{feature}.png", feature)
        images.append(_image(path, f"{feature}: training and scored distributions"))
    text = (f"<p>{found['features']} features of the input scored by run {html.escape(found['run_id'])} compared "
            f"with the training split (every statistic: table {html.escape(found['name'])}). {html.escape(verdict)} "
            "The most drifted features:</p>\n"
            + _table(["feature", "statistic", "value", "threshold", "alert"], rows, {2, 3})
            + '\n<div class="figures">' + "\n".join(images) + "</div>")
    return "<h2>Drift</h2>\n" + text, len(images)


# The config sections each stage reads: a run's report shows those of the stages it ran, and the top-level keys.
SECTIONS = {"generate": ("generate",), "featurize": ("featurize",), "train": ("featurize", "train"),
            "infer": ("train", "infer"), "evaluate": ("featurize", "train", "infer", "evaluate")}
OTHER_SECTIONS = ("generate", "featurize", "train", "infer", "evaluate", "tune", "sql_server")


def used_config(config: dict, stages) -> dict:
    """``config`` without the sections no stage of the run read."""
    used = {section for stage in stages for section in SECTIONS.get(stage, ())}
    return {key: value for key, value in config.items() if key not in OTHER_SECTIONS or key in used}


def render(cfg: Config, run_id: str, entries: list[StageRecord]) -> tuple[str, int]:
    latest = latest_per_stage(entries)
    stages = {s: r for s in STAGES for r in sorted(latest, key=lambda e: e.started_at) if r.stage == s}
    config = json.loads(next((e.config for e in entries if e.config), "{}"))
    headline = []
    if "train" in stages and "val_auc" in stages["train"].metrics:
        headline.append(f"validation AUC (training) {stages['train'].metrics['val_auc']:.4f}")
    if "evaluate" in stages and "auc" in stages["evaluate"].metrics:
        m = stages["evaluate"].metrics
        headline.append(f"AUC {m['auc']:.4f}, accuracy {m.get('accuracy', float('nan')):.4f}, log loss "
                        f"{m.get('log_loss', float('nan')):.4f}")
        if "reference_auc" in m:
            headline.append(f"reference AUC {m['reference_auc']:.4f}")
    if "infer" in stages and stages["infer"].rows is not None:
        headline.append(f"{stages['infer'].rows:,} rows scored")
    first = min(entries, key=lambda e: e.started_at)
    images, count = figures(stages)
    drifted, drift_images = drift_section(stages, run_folder(cfg, run_id))
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dlpipe run {html.escape(run_id)}</title><style>{_STYLE}</style></head>
<body>
<h1>dlpipe run {html.escape(run_id)}</h1>
<p>run_date {html.escape(str(first.run_date))}, started {first.started_at:%Y-%m-%d %H:%M:%S} UTC, database
{html.escape(cfg.database_name)}, config {html.escape(first.config_hash)}, git {html.escape(first.git_commit or "-")}</p>
<p id="headline"><b>{html.escape("; ".join(headline))}</b></p>
<h2>Stages</h2>
{timings(stages)}
<h2>Training and evaluation</h2>
{images}
{slices_section(stages)}
<h2>Features</h2>
{feature_summary(stages)}
{drifted}
<h2>Config</h2>
<p>The sections the stages of this run read (the whole config is in the runs table).</p>
<pre>{html.escape(yaml.safe_dump(used_config(config, stages), sort_keys=False))}</pre>
{_SCRIPT}
</body></html>
"""
    return body, count + drift_images


def write(spark: SparkSession, cfg: Config, run_id: str, output: str | None = None,
          entries: list[StageRecord] | None = None) -> Path:
    """Write the report of ``run_id`` from its rows in the runs table (or from ``entries``, its rows in hand)."""
    entries = entries if entries is not None else records(spark, cfg, where=f"run_id = '{run_id}'")
    if not entries:
        raise PipelineError(f"no run {run_id} in {runs_table(cfg)}: see `dlpipe runs` for the run ids")
    text, images = render(cfg, run_id, entries)
    path = Path(output) if output else run_folder(cfg, run_id) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {images} figures) for run {run_id}")
    return path
