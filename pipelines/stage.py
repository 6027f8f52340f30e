"""What a pipeline stage is, in one object, and the registry of them.

Each stage module (``pipelines/featurize.py``, ...) ends with its ``STAGE``: a :class:`Stage` that says

- what the stage reads and what decides what it writes (``plan``: its config section and the exact versions of its
  inputs, hashed into the stage *key*: two runs with the same key write the same thing, so the second may reuse the
  first's outputs while those are still there unchanged, see ``outputs_changed``),
- how it runs with what the earlier stages of its run handed over (``run``),
- what it wrote (``outputs``: the entries recorded in the runs table, its rows and metrics) and which of those the
  next stages take (``hands_on``),
- which metrics a person reads first (``key_metrics``).

The runner (``pipelines.run``), lineage and the command line go through :func:`registry` and never name a stage:
a new stage is a new module ``pipelines/<name>.py`` with its ``STAGE`` and its config section (its name in
``StageName``, in pipeline order).

Inputs and outputs are lists of entries ``{"kind": table|files|artifact|model|plots, "name": ..., "version": ...}``
(predictions and metrics entries carry the ``run_id`` instead of, or beside, a version).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from dlpipe.pipelines.config import Config, TableSource, schema
from dlpipe.pipelines.store import latest_artifact_version
from dlpipe.pipelines.tables import delta_version, input_identity, missing_files, read_source
from dlpipe.pipelines.tracking import digest


@dataclass(frozen=True)
class StagePlan:
    stage: str
    inputs: list[dict]
    document: dict  # everything that decides what the stage writes

    @property
    def key(self) -> str:
        return digest({"stage": self.stage, **self.document})


@dataclass(frozen=True)
class StageContext:
    """Where a stage runs: its run, and what earlier stages of that run handed on (``handoff``, e.g. the model
    version train wrote). ``alone``: the stage runs as its own command (``dlpipe evaluate``), not in ``dlpipe run``.
    ``fresh``: ``--force``, nothing of an earlier attempt is reused. ``plan``: the stage's plan, once the runner
    made it (what the plan resolved, the stage need not resolve again)."""

    run_id: str
    run_date: dt.date
    handoff: dict[str, str] = field(default_factory=dict)
    alone: bool = False
    fresh: bool = False
    plan: StagePlan | None = None


@dataclass(frozen=True)
class StageOutputs:
    """What a stage wrote, as the runs table records it."""

    entries: list[dict]
    rows: int | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class Stage:
    name: str
    help: str  # one line for ``dlpipe --help``
    plan: Callable[[SparkSession, Config, StageContext], StagePlan]
    run: Callable[[SparkSession, Config, StageContext], Any]
    outputs: Callable[[Config, Any], StageOutputs]
    hands_on: Callable[[list[dict]], dict[str, str]] = lambda entries: {}
    key_metrics: tuple[str, ...] = ()  # the first one present is the stage's key metric in summaries
    counts: tuple[str, ...] = ()       # key metrics that count rows (shown as integers)
    closing: Callable[[Config, Any, dict[str, str]], str | None] | None = None  # a line after the run's summary
    # alone (``dlpipe <stage> --run-id X``), the run id also names the run of this handoff (evaluate: the run whose
    # predictions it evaluates; without --run-id the stage picks one itself)
    run_id_names: str | None = None

    def key_metric(self, metrics: dict[str, float]) -> str:
        for name in self.key_metrics:
            if name in metrics:
                value = metrics[name]
                return f"{name} {value:,.0f}" if name in self.counts else f"{name} {value:.4f}"
        return ""


@cache
def registry() -> dict[str, Stage]:
    """Every stage, in pipeline order: the ``STAGE`` of module ``dlpipe.pipelines.<name>`` for each name of the
    config's ``StageName``."""
    return {name: importlib.import_module(f"dlpipe.pipelines.{name}").STAGE for name in schema.STAGES}


def stage(name: str) -> Stage:
    return registry()[name]


def handoff_of(stage_name: str, entries: list[dict]) -> dict[str, str]:
    """What a recorded stage (of this or an earlier attempt of a run) hands on to the next stages."""
    known = registry().get(stage_name)
    return known.hands_on(entries) if known else {}


# ------------------------------------------------------------------------------------- helpers of the plans


def section(value) -> dict:
    """A config section as plain JSON data (for a plan document)."""
    return json.loads(json.dumps(dataclasses.asdict(value), default=str))


def source_input(spark: SparkSession, cfg: Config, source: TableSource) -> tuple[dict, dict]:
    """(lineage entry, identity) of an input: a Delta table by its version, other files by their names and sizes."""
    identity = input_identity(spark, cfg, source, read_source(spark, cfg, source))
    name = cfg.qualified(source.table) if source.table else source.path
    if identity["format"] == "delta":
        return {"kind": "table", "name": name, "version": identity["delta_version"]}, identity
    return {"kind": "files", "name": name, "version": "files-" + digest(identity["files"])}, identity


_ENTRY_FIELDS = ("kind", "name", "run_id", "title")  # the rest of a plots entry: kind of plot -> its file


def outputs_changed(spark: SparkSession, cfg: Config, entries: list[dict]) -> str | None:
    """None when every output of an earlier run is still as it left it; otherwise what changed."""
    for entry in entries:
        kind, name = entry["kind"], entry["name"]
        if kind == "table":
            if not spark.catalog.tableExists(name):
                return f"table {name} no longer exists"
            if entry.get("run_id") is not None:  # a table runs share: the run's rows must all still be there
                held = spark.table(name).where(F.col("run_id") == entry["run_id"]).count()
                written = entry.get("rows")
                if held == 0 or (written is not None and held != written):
                    return (f"table {name} holds {held:,} rows of run {entry['run_id']}"
                            + (f", not the {written:,} written" if written is not None else ""))
            else:  # a table the stage owns: it must still be at the version written
                try:
                    current = delta_version(spark, name)
                except AnalysisException:
                    return f"table {name} is no longer a Delta table"
                if current != entry["version"]:
                    return f"table {name} changed since (version {entry['version']} -> {current})"
                missing = missing_files(spark, name)
                if missing:
                    return f"{len(missing)} data file(s) of table {name} are missing (first: {missing[0]})"
        elif kind == "artifact":
            if latest_artifact_version(cfg, name) != entry["version"]:
                return f"feature artifact {name} {entry['version']} is no longer the latest"
        elif kind == "model" and not (Path(entry["path"]) / "metadata.json").is_file():
            return f"model {name} {entry['version']} no longer exists"
        elif kind == "plots" and not all(Path(p).is_file() for k, p in entry.items() if k not in _ENTRY_FIELDS):
            return f"the {name} plots no longer exist"
    return None
