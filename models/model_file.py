"""The saved Keras model file (``model.keras``): written all or nothing, and checked before it is promoted.

A ``.keras`` file is a zip archive of the model's config and weights. A save cut short by a kill leaves a partial
file, which Keras finds out only when scoring loads it. Every write here goes to a temporary name in the same folder,
is checked (each member's CRC, the config and the weights present), and only then renamed over the final name:
a reader or a rerun sees a complete model file or none.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

REQUIRED_MEMBERS = ("config.json", "model.weights.h5")


def problem(path: Path) -> str | None:
    """None when ``path`` is a complete ``.keras`` file; otherwise what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as err:
        return f"{path} is not a complete Keras model file ({err})"
    if bad is not None:
        return f"{path} is damaged (member {bad} fails its checksum)"
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    return f"{path} lacks {', '.join(missing)}" if missing else None


def _partial(path: Path) -> Path:
    return path.with_name(f".partial-{os.getpid()}-{path.name}")  # keeps the .keras suffix Keras asks for


def _promote(partial: Path, path: Path) -> None:
    wrong = problem(partial)
    if wrong is not None:
        partial.unlink(missing_ok=True)
        raise OSError(f"model file not written: {wrong}")
    partial.replace(path)


def save(model, path: Path) -> None:
    """``model.save(path)``, all or nothing."""
    path = Path(path)
    partial = _partial(path)
    model.save(partial)
    _promote(partial, path)


def copy(source: Path, path: Path) -> None:
    """Copy a checked model file to ``path``, all or nothing."""
    path = Path(path)
    partial = _partial(path)
    shutil.copy2(source, partial)
    _promote(partial, path)
