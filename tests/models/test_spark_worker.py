"""The scorer's two fixes of Spark's per-task costs in its Python workers (``models.spark_worker``)."""
from __future__ import annotations

import gc
import importlib
import sys
import zipfile

import pyarrow as pa
import pytest

from dlpipe.models.spark_worker import freeze_loaded_objects, keep_archive_indexes


def test_an_archive_on_the_path_keeps_the_index_it_read(tmp_path, monkeypatch):
    archive = tmp_path / "modules.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("dlpipe_probe_first.py", "VALUE = 1\n")
    monkeypatch.syspath_prepend(str(archive))
    monkeypatch.delitem(sys.path_importer_cache, str(archive), raising=False)
    try:
        assert importlib.import_module("dlpipe_probe_first").VALUE == 1
        assert keep_archive_indexes() >= 1
        assert keep_archive_indexes() == 0  # each importer once

        # What Spark's worker does before every task no longer rereads the archive: a module written into it
        # afterwards stays unseen, the ones it had still import.
        with zipfile.ZipFile(archive, "a") as z:
            z.writestr("dlpipe_probe_second.py", "VALUE = 2\n")
        importlib.invalidate_caches()
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("dlpipe_probe_second")
        del sys.modules["dlpipe_probe_first"]
        assert importlib.import_module("dlpipe_probe_first").VALUE == 1
    finally:
        for name in ("dlpipe_probe_first", "dlpipe_probe_second"):
            sys.modules.pop(name, None)
        sys.path_importer_cache.pop(str(archive), None)


def _archives_in_worker(batches):
    import zipimport

    from dlpipe.models.spark_worker import keep_archive_indexes

    keep_archive_indexes()
    importers = [f for f in sys.path_importer_cache.values() if isinstance(f, zipimport.zipimporter)]
    for _ in batches:
        pass
    yield pa.RecordBatch.from_arrays(
        [pa.array([len(importers)]), pa.array([sum(f.invalidate_caches.__name__ == "_unchanged" for f in importers)])],
        names=["archives", "kept"])


def test_spark_python_workers_have_archives_on_their_path_and_keep_their_indexes(spark):
    """The premise of the fix, on the real worker: pyspark puts its zips (and a jar) on the worker's path."""
    rows = spark.range(0, 4, 1, 4).mapInArrow(_archives_in_worker, "archives long, kept long").collect()
    assert all(r.archives >= 2 and r.kept == r.archives for r in rows), rows


def test_freezing_takes_the_loaded_objects_out_of_the_collection():
    held = [object() for _ in range(1000)]
    try:
        freeze_loaded_objects()
        assert gc.get_freeze_count() >= len(held)
    finally:
        gc.unfreeze()
