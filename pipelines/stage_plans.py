"""What each stage reads, what decides what it writes, and what it wrote: the facts the run orchestration
(``pipelines.run``) records in the runs table, compares to skip a stage, and follows for lineage.

A stage's *key* is the hash of its plan document: its config section and the exact versions of its inputs. Two
runs with the same key write the same thing, so the second may reuse the first's outputs, as long as those are
still there unchanged (``outputs_still_there``).

Inputs and outputs are lists of entries ``{"kind": table|files|artifact|model|plots, "name": ..., "version": ...}``
(predictions and metrics entries carry the ``run_id`` instead of, or beside, a version).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.utils import AnalysisException

from pipelines import evaluate, infer, train
from pipelines.config import Config, TableSource
from pipelines.session import training_workers
from pipelines.store import latest_artifact_version, load_artifact, load_model_metadata
from pipelines.tables import delta_version, input_identity, read_source
from pipelines.tracking import digest


@dataclass(frozen=True)
class StagePlan:
    stage: str
    inputs: list[dict]
    document: dict  # everything that decides what the stage writes

    @property
    def key(self) -> str:
        return digest({"stage": self.stage, **self.document})


@dataclass
class Handoff:
    """What one stage of a run passes to the next: the model it trained (or reused), the predictions it wrote."""

    model_version: str | None = None
    predictions_run: str | None = None

    def take(self, outputs: list[dict]) -> None:
        for entry in outputs:
            if entry["kind"] == "model":
                self.model_version = entry["version"]
            if entry["kind"] == "table" and entry.get("role") == "predictions":
                self.predictions_run = entry["run_id"]


def _asdict(section) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(section), default=str))


def source_input(spark: SparkSession, cfg: Config, source: TableSource) -> tuple[dict, dict]:
    """(lineage entry, identity) of an input: a Delta table by its version, other files by their names and sizes."""
    identity = input_identity(spark, cfg, source, read_source(spark, cfg, source))
    name = cfg.qualified(source.table) if source.table else source.path
    if identity["format"] == "delta":
        return {"kind": "table", "name": name, "version": identity["delta_version"]}, identity
    return {"kind": "files", "name": name, "version": "files-" + digest(identity["files"])}, identity


def plan(spark: SparkSession, cfg: Config, stage: str, run_id: str, run_date: dt.date, handoff: Handoff) -> StagePlan:
    return _PLANS[stage](spark, cfg, run_id, run_date, handoff)


def _plan_generate(spark, cfg: Config, run_id, run_date, handoff) -> StagePlan:
    return StagePlan("generate", [], {"generate": _asdict(cfg.generate), "table": cfg.qualified(cfg.generate.output_table)})


def _plan_featurize(spark, cfg: Config, run_id, run_date, handoff) -> StagePlan:
    entry, identity = source_input(spark, cfg, cfg.featurize.input)
    return StagePlan("featurize", [entry], {
        "featurize": _asdict(cfg.featurize), "input": identity, "table": cfg.qualified(cfg.featurize.output_table),
        "workers": training_workers(spark, cfg),  # the table's file layout is planned for the training workers
    })


def _plan_train(spark, cfg: Config, run_id, run_date, handoff) -> StagePlan:
    artifact = load_artifact(cfg, cfg.featurize.output_table)
    _, document = train.config_fingerprint(cfg, artifact, training_workers(spark, cfg))
    table = artifact["feature_table"]
    return StagePlan("train", [
        {"kind": "table", "name": table["name"], "version": table["delta_version"]},
        {"kind": "artifact", "name": cfg.featurize.output_table, "version": artifact["version"]},
    ], document)


def _plan_infer(spark, cfg: Config, run_id, run_date, handoff) -> StagePlan:
    version = handoff.model_version or cfg.infer.model_version
    metadata, _ = load_model_metadata(cfg, cfg.train.model_name, version)
    entry, identity = source_input(spark, cfg, cfg.infer.input)
    artifact = metadata["feature_artifact"]
    model = {"kind": "model", "name": metadata["model_name"], "version": metadata["model_version"]}
    return StagePlan("infer", [
        model, {"kind": "artifact", "name": artifact["table"], "version": artifact["version"]}, entry,
    ], {
        "infer": {**_asdict(cfg.infer), "model_version": metadata["model_version"]}, "model": model,
        "input": identity, "run_date": str(run_date), "table": cfg.qualified(cfg.infer.output_table),
    })


def _plan_evaluate(spark, cfg: Config, run_id, run_date, handoff) -> StagePlan:
    predictions = cfg.qualified(cfg.infer.output_table)
    scored = handoff.predictions_run or run_id
    entry, identity = source_input(spark, cfg, cfg.infer.input)
    return StagePlan("evaluate", [{"kind": "table", "name": predictions, "run_id": scored}, entry], {
        "evaluate": _asdict(cfg.evaluate), "threshold": cfg.infer.threshold, "weight": cfg.train.sample_weight,
        "predictions": {"table": predictions, "run_id": scored}, "labels": identity,
        "table": cfg.qualified(cfg.evaluate.metrics_table),
    })


_PLANS = {"generate": _plan_generate, "featurize": _plan_featurize, "train": _plan_train, "infer": _plan_infer,
          "evaluate": _plan_evaluate}


# ------------------------------------------------------------------------------------------------ outputs


def outputs(cfg: Config, stage: str, result) -> tuple[list[dict], int | None, dict[str, float]]:
    """(output entries, rows, key metrics) of a stage's result."""
    if stage == "generate":
        return [{"kind": "table", "name": result.table, "version": result.version}], result.rows, {}
    if stage == "featurize":
        rows = result.rows_per_split
        return [
            {"kind": "table", "name": result.table, "version": result.table_version},
            {"kind": "artifact", "name": cfg.featurize.output_table, "version": result.artifact_version,
             "path": result.artifact_path},
        ], sum(rows.values()), {f"{split}_rows": float(n) for split, n in rows.items()}
    if stage == "train":
        metadata = json.loads((Path(result.model_path) / "metadata.json").read_text())
        history = metadata["history"]
        epoch = (metadata.get("best_epoch") or metadata["epochs_done"]) - 1
        metrics = {k: float(v[epoch]) for k, v in history.items() if len(v) > epoch}
        return [{"kind": "model", "name": result.model_name, "version": result.model_version,
                 "path": result.model_path}], metadata["train_rows"], {**metrics, "epochs": float(metadata["epochs_done"])}
    if stage == "infer":
        entry = {"kind": "table", "role": "predictions", "name": result.table, "version": result.table_version,
                 "run_id": result.run_id, "run_date": str(result.run_date), "missing": result.missing,
                 "out_of_vocabulary": result.out_of_vocabulary}
        return [entry], result.rows, {"missing_values": float(sum(result.missing.values())),
                                      "out_of_vocabulary": float(sum(result.out_of_vocabulary.values())),
                                      "predicted_positive": float(result.predicted_positive),
                                      **({"mean_score": result.mean_score} if result.mean_score is not None else {})}
    if stage == "evaluate":
        metrics = {"auc": result.auc, "accuracy": result.accuracy, "log_loss": result.log_loss}
        if result.reference_auc is not None:
            metrics["reference_auc"] = result.reference_auc
        return [{"kind": "table", "role": "metrics", "name": result.table, "run_id": result.run_id},
                {"kind": "plots", "name": "evaluation", "run_id": result.run_id, **result.plots}], result.rows, metrics
    raise ValueError(stage)


def outputs_still_there(spark: SparkSession, cfg: Config, entries: list[dict]) -> str | None:
    """None when every output of an earlier run is still as it left it; otherwise what changed."""
    for entry in entries:
        kind, name = entry["kind"], entry["name"]
        if kind == "table":
            if not spark.catalog.tableExists(name):
                return f"table {name} no longer exists"
            if entry.get("run_id") is None:  # a table the stage owns: it must still be at the version written
                try:
                    current = delta_version(spark, name)
                except AnalysisException:
                    return f"table {name} is no longer a Delta table"
                if current != entry["version"]:
                    return f"table {name} changed since (version {entry['version']} -> {current})"
        elif kind == "artifact":
            if latest_artifact_version(cfg, name) != entry["version"]:
                return f"feature artifact {name} {entry['version']} is no longer the latest"
        elif kind == "model" and not (Path(entry["path"]) / "metadata.json").is_file():
            return f"model {name} {entry['version']} no longer exists"
        elif kind == "plots" and not all(Path(p).is_file() for k, p in entry.items() if k in ("roc", "scores", "calibration")):
            return "the evaluation plots no longer exist"
    return None


def execute(spark: SparkSession, cfg: Config, stage: str, run_id: str, run_date: dt.date, handoff: Handoff,
            fresh: bool = False):
    """Run one stage with what the earlier stages of this run handed over."""
    from pipelines import featurize, generate

    if stage == "generate":
        return generate.run(spark, cfg)
    if stage == "featurize":
        return featurize.run(spark, cfg)
    if stage == "train":
        return train.run(spark, cfg, run_id=run_id, fresh=fresh)
    if stage == "infer":
        if handoff.model_version:
            cfg = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, model_version=handoff.model_version))
        return infer.run(spark, cfg, run_id=run_id, run_date=run_date)
    if stage == "evaluate":
        return evaluate.run(spark, cfg, run_id=handoff.predictions_run or run_id)
    raise ValueError(stage)
