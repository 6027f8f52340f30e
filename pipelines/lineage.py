"""``dlpipe runs`` and ``dlpipe lineage``: reading the runs table (``pipelines.tracking``).

Lineage follows the recorded entries: a stage's input ``{"kind", "name", "version"}`` (or ``run_id``) is matched
to the output of the successful stage that wrote exactly that, back to inputs no stage of the pipeline wrote.
"""
from __future__ import annotations

from collections import Counter

from pyspark.sql import SparkSession

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.sql import format_rows
from dlpipe.pipelines.stage import registry
from dlpipe.pipelines.tracking import StageRecord, latest_per_stage, records, runs_table

_MATCHED = ("name", "version", "run_id")


def list_runs(spark: SparkSession, cfg: Config, limit: int = 20, run_id: str | None = None) -> list[StageRecord]:
    """Print the stages of the ``limit`` most recent runs, one line per stage (its latest attempt); or, for one
    run, every attempt of each stage with what it read and wrote."""
    attempts = latest_per_stage(records(spark, cfg, where=f"run_id = '{run_id}'" if run_id else None))
    if not attempts:
        what = f"no run {run_id}" if run_id else "no runs yet"
        raise PipelineError(f"{what} in {runs_table(cfg)}: `dlpipe run` records its stages there")
    recent = list(dict.fromkeys(e.run_id for e in attempts))[:limit]  # newest first
    tried = Counter((e.run_id, e.stage) for e in attempts)
    if run_id:
        shown = sorted(attempts, key=lambda e: e.started_at)
    else:
        latest = {}
        for e in sorted(attempts, key=lambda e: e.started_at):
            if e.run_id in recent:
                latest[(e.run_id, e.stage)] = e
        shown = sorted(latest.values(), key=lambda e: (recent.index(e.run_id), e.started_at))
    rows = [(e.run_id, str(e.run_date or ""), e.stage, e.status, str(tried[(e.run_id, e.stage)]),
             f"{e.started_at:%Y-%m-%d %H:%M:%S}", f"{e.seconds:.1f}" if e.seconds is not None else "",
             f"{e.rows:,}" if e.rows is not None else "", _note(e)) for e in shown]
    print(format_rows(["run_id", "run_date", "stage", "status", "attempts", "started (UTC)", "seconds", "rows", "note"],
                      rows))
    if run_id:
        for e in shown:
            print(f"\n{e.stage} ({e.status}, attempt {e.attempt}), stage key {e.stage_key}, config {e.config_hash}, "
                  f"git {e.git_commit or '-'}")
            for entry in e.inputs:
                print(f"  read  {describe(entry)}")
            for entry in e.outputs:
                print(f"  wrote {describe(entry)}")
    return shown


def _note(e: StageRecord) -> str:
    if e.status == "failed":
        return (e.message or "")[:80]
    if e.status == "skipped":
        return f"reused run {e.reused_run}"
    known = registry().get(e.stage)
    return known.key_metric(e.metrics) if known else ""


def describe(entry: dict, aliases: dict[tuple[str, str], list[str]] | None = None) -> str:
    """``model higgs_mlp v3 (aliases production)``, ``table dlpipe.predictions version 4 (rows of run r1)``."""
    text = f"{entry['kind']} {entry['name']}"
    if entry.get("version") is not None:
        text += f" {entry['version']}" if entry["kind"] in ("model", "artifact") else f" version {entry['version']}"
    named = (aliases or {}).get((entry["name"], entry.get("version"))) if entry["kind"] == "model" else None
    if named:
        text += f" (aliases {', '.join(named)})"
    if entry.get("run_id"):
        text += f" (rows of run {entry['run_id']})"
    return text


def producer(history: list[StageRecord], entry: dict) -> StageRecord | None:
    """The latest successful stage that wrote exactly ``entry``."""
    wanted = {k: entry[k] for k in _MATCHED if entry.get(k) is not None}
    for record in history:
        if record.status != "succeeded":
            continue
        for output in record.outputs:
            if output["kind"] == entry["kind"] and all(output.get(k) == v for k, v in wanted.items()):
                return record
    return None


def target(cfg: Config, history: list[StageRecord], name: str, version: str | None) -> dict:
    """The entry ``dlpipe lineage NAME`` asks about: a model by name, or a table by (qualified) name."""
    table = name if "." in name else cfg.qualified(name)
    for record in history:
        if record.status != "succeeded":
            continue
        for output in record.outputs:
            if output["name"] not in (name, table) or output["kind"] not in ("model", "table"):
                continue
            if version is None or str(output.get("version")) == version:
                return {k: output[k] for k in ("kind", "name", "version", "run_id") if output.get(k) is not None}
    at = f" at version {version}" if version else ""
    raise PipelineError(f"no table or model {name}{at} was written by a recorded run (see `dlpipe runs`)")


def lines(history: list[StageRecord], entry: dict, depth: int = 0, shown: set | None = None,
          aliases: dict[tuple[str, str], list[str]] | None = None) -> list[str]:
    """The tree of ``entry``'s producers, one line each; a stage shown once is not expanded again. A model's line
    names the aliases that point at it now."""
    shown = set() if shown is None else shown
    record = producer(history, entry)
    pad, said = "  " * depth, describe(entry, aliases)
    if record is None:
        return [f"{pad}{said}  <- not written by a recorded stage (an input of the pipeline)"]
    key = (record.run_id, record.stage, record.attempt)
    if key in shown:
        return [f"{pad}{said}  <- {record.stage}, run {record.run_id} (above)"]
    shown.add(key)
    out = [f"{pad}{said}  <- {record.stage}, run {record.run_id}, {record.ended_at:%Y-%m-%d %H:%M} UTC, "
           f"config {record.config_hash}, git {(record.git_commit or '-')[:10]}"]
    for source in record.inputs:
        out += lines(history, source, depth + 1, shown, aliases)
    return out


def show(spark: SparkSession, cfg: Config, name: str, version: str | None = None) -> list[str]:
    from dlpipe.pipelines.registry import aliases_by_version, resolve

    history = records(spark, cfg)
    if version is not None and not version.isdigit():  # a model alias names a version
        version = resolve(spark, cfg, name, version)
    text = lines(history, target(cfg, history, name, version), aliases=aliases_by_version(spark, cfg))
    print("\n".join(text))
    return text
