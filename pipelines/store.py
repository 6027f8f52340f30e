"""Versioned artifacts on the data folder: fitted feature artifacts and trained models.

Layout under ``<data_dir>``::

    artifacts/<feature table>/v1.json, v2.json, ...   fitted feature state (human-readable JSON)
    models/<model name>/v1/, v2/, ...                   model.keras, training_curves.png, metadata.json
    models/<model name>/runs/<run id>/                  checkpoints, state.json, config.json of a training run

Versions count up from 1; "latest" is the highest complete one (a model folder counts once its metadata.json
is written, so a crashed training run never becomes the latest).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from dlpipe.files import write_json_atomically
from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError

_VERSION = re.compile(r"^v(\d+)(\.json)?$")
METADATA_FILE = "metadata.json"


def _versions(folder: Path, complete) -> list[int]:
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _VERSION.match(entry.name)
        if match and complete(entry):
            found.append(int(match.group(1)))
    return sorted(found)


# ------------------------------------------------------------------------------------------ feature artifacts


def artifact_folder(cfg: Config, table: str) -> Path:
    return cfg.outputs_path / "artifacts" / table


def save_artifact(cfg: Config, table: str, payload: dict) -> tuple[str, Path]:
    """Write the next version of a feature table's artifact; returns (version, path)."""
    folder = artifact_folder(cfg, table)
    folder.mkdir(parents=True, exist_ok=True)
    number = max(_versions(folder, Path.is_file), default=0) + 1
    version = f"v{number}"
    path = folder / f"{version}.json"
    write_json_atomically(path, {"version": version, **payload})
    return version, path


def latest_artifact_version(cfg: Config, table: str) -> str | None:
    """The latest artifact version of ``table`` (``v3``), or None when it has none."""
    versions = _versions(artifact_folder(cfg, table), Path.is_file)
    return f"v{versions[-1]}" if versions else None


def load_artifact(cfg: Config, table: str, version: str | None = None) -> dict:
    """The artifact of ``table`` at ``version`` (default: latest)."""
    folder = artifact_folder(cfg, table)
    if version is None:
        version = latest_artifact_version(cfg, table)
        if version is None:
            raise PipelineError(f"no feature artifact for table {table} under {folder}: run `dlpipe featurize` first")
    path = folder / f"{version}.json"
    if not path.is_file():
        raise PipelineError(f"feature artifact {path} not found: run `dlpipe featurize` first or fix the version")
    return json.loads(path.read_text())


def artifact_digest(artifact: dict) -> str:
    """A hash of an artifact's content: a model records it, so scoring can tell that the artifact file it finds
    under the same version is the one the model was trained with (not a refit in a rebuilt data folder)."""
    return hashlib.sha256(json.dumps(artifact, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------ models


def models_folder(cfg: Config) -> Path:
    return cfg.outputs_path / "models"


def model_folder(cfg: Config, name: str) -> Path:
    return models_folder(cfg) / name


def new_model_dir(cfg: Config, name: str) -> tuple[str, Path]:
    """Reserve the next model version folder; returns (version, folder)."""
    folder = model_folder(cfg, name)
    folder.mkdir(parents=True, exist_ok=True)
    number = max(_versions(folder, Path.is_dir), default=0) + 1
    while True:
        path = folder / f"v{number}"
        try:
            path.mkdir()
            return f"v{number}", path
        except FileExistsError:  # another job took this number first
            number += 1


def save_model_metadata(path: Path, metadata: dict) -> None:
    write_json_atomically(path / METADATA_FILE, metadata)


def decision_threshold(cfg: Config, metadata: dict) -> float:
    """The score from which a row is predicted positive: ``infer.threshold``, or with ``auto`` the threshold the
    model's training picked on the validation split by ``infer.threshold_rule``."""
    ic = cfg.infer
    if ic.threshold != "auto":
        return ic.threshold
    picked = (metadata.get("thresholds") or {}).get(ic.threshold_rule)
    if picked is None:
        raise PipelineError(
            f"model {metadata['model_name']} {metadata['model_version']} has no {ic.threshold_rule} threshold (it "
            "was trained without a validation split, or before dlpipe picked thresholds): set infer.threshold to "
            "a number, or train it again")
    return picked


def load_model_metadata(cfg: Config, name: str, version: str | None = None) -> tuple[dict, Path]:
    """(metadata, folder) of model ``name`` at ``version`` (default: the latest complete one)."""
    folder = model_folder(cfg, name)
    if version is None:
        versions = _versions(folder, lambda p: (p / METADATA_FILE).is_file())
        if not versions:
            raise PipelineError(f"no trained model {name} under {folder}: run `dlpipe train` first")
        version = f"v{versions[-1]}"
    path = folder / version
    if not (path / METADATA_FILE).is_file():
        raise PipelineError(f"model {name} {version} not found at {path}: train it first or fix the version")
    return json.loads((path / METADATA_FILE).read_text()), path
