"""Model versions and their aliases (``dlpipe models``): what each trained version is, and which version a name
such as ``production`` points at.

Versions live in the model store (``pipelines.store``: ``models/<name>/v<N>/metadata.json``), each written once.
Aliases live in the Delta table ``model_aliases_table`` of the pipeline's database, one row per move (model,
alias, version, the version it named before, who moved it and when): the table is the alias's history, and its
current version is its latest row. As in MLflow's model registry, an alias is a movable name over fixed versions:
a scheduled ``infer`` with ``infer.model_version: production`` scores with the version the alias names when the
stage starts, and records that version.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import socket
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.sql import format_rows
from dlpipe.pipelines.store import METADATA_FILE, load_model_metadata, model_folder, models_folder

VERSION = re.compile(r"^v[1-9][0-9]*$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]*$")

TABLE_SCHEMA = T.StructType([
    T.StructField("model_name", T.StringType(), False),
    T.StructField("alias", T.StringType(), False),
    T.StructField("model_version", T.StringType(), False),
    T.StructField("previous_version", T.StringType(), True),
    T.StructField("moved_by", T.StringType(), False),
    T.StructField("moved_at", T.TimestampType(), False),
])


@dataclass(frozen=True)
class AliasMove:
    model_name: str
    alias: str
    model_version: str
    previous_version: str | None
    moved_by: str
    moved_at: dt.datetime


def aliases_table(cfg: Config) -> str:
    return cfg.qualified(cfg.model_aliases_table)


def current_aliases(spark: SparkSession, cfg: Config, name: str | None = None) -> dict[tuple[str, str], AliasMove]:
    """(model, alias) -> its latest move: what each alias names now (of model ``name``, or of every model)."""
    table = aliases_table(cfg)
    if not spark.catalog.tableExists(table):
        return {}
    rows = spark.table(table)
    if name is not None:
        rows = rows.where(F.col("model_name") == name)
    current: dict[tuple[str, str], AliasMove] = {}
    for row in rows.orderBy("moved_at").collect():
        current[(row["model_name"], row["alias"])] = AliasMove(**row.asDict())
    return current


def aliases_by_version(spark: SparkSession, cfg: Config) -> dict[tuple[str, str], list[str]]:
    """(model, version) -> the aliases naming it now, sorted."""
    out: dict[tuple[str, str], list[str]] = {}
    for (model, alias), move in sorted(current_aliases(spark, cfg).items()):
        out.setdefault((model, move.model_version), []).append(alias)
    return out


def resolve(spark: SparkSession, cfg: Config, name: str, wanted: str | None) -> str | None:
    """The version ``wanted`` names: itself when it is a version (``v3``) or None (the latest), else the version
    the alias names now."""
    if wanted is None or VERSION.match(wanted):
        return wanted
    found = current_aliases(spark, cfg, name).get((name, wanted))
    if found is None:
        known = sorted(alias for (_, alias) in current_aliases(spark, cfg, name))
        have = f"its aliases: {', '.join(known)}" if known else "it has none"
        raise PipelineError(f"model {name} has no alias {wanted!r} ({have}): point it at a version with `dlpipe models "
                            f"promote {name} VERSION --alias {wanted}`, or set infer.model_version to a version")
    return found.model_version


def promote(spark: SparkSession, cfg: Config, name: str, version: str, alias: str) -> AliasMove:
    """Point ``alias`` of model ``name`` at ``version`` (which must exist), recording who moved it and when."""
    if not ALIAS.match(alias) or VERSION.match(alias) or alias == "latest":
        raise PipelineError(f"alias {alias!r} is not a name: use lowercase letters, digits, - and _, starting with a "
                            "letter, and neither a version such as v3 nor latest (which names the latest version)")
    version = f"v{version}" if version.isdigit() else version
    if not VERSION.match(version):
        raise PipelineError(f"{version!r} is not a model version: give one such as v3 (see `dlpipe models {name}`)")
    load_model_metadata(cfg, name, version)  # refuses a version that was never trained
    before = current_aliases(spark, cfg, name).get((name, alias))
    move = AliasMove(name, alias, version, before.model_version if before else None,
                     f"{getpass.getuser()}@{socket.gethostname()}",
                     dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    (spark.createDataFrame([tuple(move.__dict__.values())], TABLE_SCHEMA).write.format("delta").mode("append")
     .saveAsTable(aliases_table(cfg)))
    was = f" (was {before.model_version})" if before else ""
    print(f"models: {name} alias {alias} -> {version}{was}, set by {move.moved_by} at {move.moved_at:%Y-%m-%d %H:%M:%S} "
          f"UTC; history in {aliases_table(cfg)}")
    return move


def model_names(cfg: Config) -> list[str]:
    folder = models_folder(cfg)
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def version_rows(cfg: Config, name: str, aliases: dict[tuple[str, str], list[str]]) -> list[tuple]:
    """One row per complete version of model ``name``, newest first."""
    rows = []
    folders = [p for p in model_folder(cfg, name).glob("v*") if VERSION.match(p.name) and (p / METADATA_FILE).is_file()]
    for path in sorted(folders, key=lambda p: -int(p.name[1:])):
        meta = json.loads((path / METADATA_FILE).read_text())
        history = meta.get("history") or {}
        epoch = (meta.get("best_epoch") or meta.get("epochs_done") or 0) - 1
        metric = lambda key: f"{history[key][epoch]:.4f}" if len(history.get(key, [])) > epoch >= 0 else ""  # noqa: E731
        table = meta.get("feature_table") or {}
        artifact = meta.get("feature_artifact") or {}
        data = f"{table.get('name', '?')} version {table.get('delta_version', '?')}, artifact {artifact.get('version', '?')}"
        rows.append((name, meta["model_version"], meta.get("created_at", "")[:19].replace("T", " "), meta.get("run_id", ""),
                     data, metric("val_auc"), metric("val_loss"), ", ".join(aliases.get((name, meta["model_version"]), []))))
    return rows


def show(spark: SparkSession, cfg: Config, name: str | None = None) -> list[tuple]:
    """Print the versions of model ``name`` (or of every model), with their aliases."""
    names = [name] if name else model_names(cfg)
    aliases = aliases_by_version(spark, cfg)
    rows = [row for n in names for row in version_rows(cfg, n, aliases)]
    if not rows:
        what = f"no trained model {name}" if name else "no trained models"
        raise PipelineError(f"{what} under {models_folder(cfg)}: run `dlpipe train` first")
    print(format_rows(["model", "version", "created (UTC)", "run", "trained on", "val_auc", "val_loss", "aliases"],
                      rows))
    return rows


def command(spark: SparkSession, cfg: Config, words: list[str], alias: str | None) -> None:
    """``dlpipe models [NAME]`` and ``dlpipe models promote NAME VERSION --alias ALIAS``."""
    if words and words[0] == "promote":
        if len(words) != 3 or not alias:
            raise PipelineError("usage: dlpipe models promote NAME VERSION --alias ALIAS")
        promote(spark, cfg, words[1], words[2], alias)
    elif len(words) > 1 or alias:
        raise PipelineError("usage: dlpipe models [NAME], or dlpipe models promote NAME VERSION --alias ALIAS")
    else:
        show(spark, cfg, words[0] if words else None)
