"""The model file is written all or nothing and checked: a file cut short is never taken for a model."""
from __future__ import annotations

import zipfile

import pytest

from dlpipe.models import model_file


def keras_like(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"\0" * 50_000)
    return path


def test_a_complete_file_passes_and_a_cut_or_incomplete_one_does_not(tmp_path):
    whole = keras_like(tmp_path / "model.keras")
    assert model_file.problem(whole) is None
    cut = tmp_path / "cut.keras"
    cut.write_bytes(whole.read_bytes()[:20_000])
    assert model_file.problem(cut).startswith(f"{cut} is not a complete Keras model file")
    assert model_file.problem(tmp_path / "none.keras") == f"{tmp_path / 'none.keras'} does not exist"
    with zipfile.ZipFile(tmp_path / "bare.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert model_file.problem(tmp_path / "bare.keras") == f"{tmp_path / 'bare.keras'} lacks model.weights.h5"


def test_a_copy_of_a_damaged_file_leaves_nothing_behind(tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(keras_like(tmp_path / "whole.keras").read_bytes()[:20_000])
    target = tmp_path / "out" / "model.keras"
    target.parent.mkdir()
    with pytest.raises(OSError, match="model file not written"):
        model_file.copy(cut, target)
    assert list(target.parent.iterdir()) == []
    model_file.copy(tmp_path / "whole.keras", target)
    assert [p.name for p in target.parent.iterdir()] == ["model.keras"]
