"""One rank's batches for one epoch: Petastorm reads the rank's files of the epoch plan into NumPy batches for
``tf.data``.

- Petastorm's single-threaded ``dummy`` pool reads the files (its thread pool returned empty shards here, see
  docs/design.md), one epoch per reader, row groups in a seeded order.
- Each row group becomes the few arrays training needs at once (the model inputs, label, weight), so the work per
  batch is a slice.
- Rows are shuffled within a buffer: each row group is concatenated with the rows left over from the previous one
  and permuted (seeded by seed, epoch and rank) before it is cut into batches.
- Each batch is ``(inputs, label, weight)``: ``inputs`` as ``models.networks.model_inputs`` arranges them, the label
  as float32, and the sample weight (the configured weight column, else 1). After the rank's last row, padding
  batches of one row with weight 0 fill up to the plan's steps (``models.epochs``).
- Batches leave in blocks (all full batches of a row group as one array) that ``tf.data`` slices: one Python
  generator step per row group instead of per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dlpipe.features.schema import FeatureSchema


@dataclass(frozen=True)
class ReadSettings:
    schema: FeatureSchema
    batch_size: int
    seed: int
    weight_column: str | None = None
    class_weights: tuple[float, float] | None = None  # (label 0, label 1): multiply each row's weight
    record_column: str | None = None  # tests: save the values of this column each rank yields, per epoch
    record_dir: str | None = None

    @property
    def columns(self) -> list[str]:
        extra = [c for c in (self.weight_column, self.record_column) if c]
        return list(dict.fromkeys([*self.schema.feature_columns, self.schema.label, *extra]))


def _arrays(batch) -> dict[str, np.ndarray]:
    """Petastorm's namedtuple of columns as NumPy arrays; vector columns (arrays of arrays) stacked to 2-D."""
    columns = {}
    for name, values in batch._asdict().items():
        values = np.asarray(values)
        columns[name] = np.stack(values) if values.dtype == object else values
    return columns


def _take(columns: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in columns.items()}


def _concat(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return b if a is None else {name: np.concatenate([a[name], b[name]]) for name in b}


def _rows(columns: dict[str, np.ndarray] | None) -> int:
    return 0 if columns is None else len(next(iter(columns.values())))


def _list_columns_as_matrices(original):
    """Petastorm 0.13.1 turns a list column (the one-hot vectors) into a matrix row by row (``np.vstack`` of one
    array per row): 60% of the whole read path's time. This does the same in one step from the Arrow buffers and
    hands anything else (other types, null or ragged lists) to Petastorm's own conversion unchanged."""
    import pyarrow as pa

    def convert(table, schema):
        matrices = {}
        for name in table.column_names:
            column = table.column(name)
            if not pa.types.is_list(column.type):
                continue
            array = column.combine_chunks()
            lengths = np.diff(array.offsets.to_numpy())
            if array.null_count or (len(lengths) and (lengths != lengths[0]).any()):
                return original(table, schema)  # Petastorm's own handling and error messages
            width = int(lengths[0]) if len(lengths) else 0
            values = array.flatten().to_numpy(zero_copy_only=False)
            matrices[name] = values.reshape((len(array), width) + tuple(schema.fields[name].shape[1:]))
        if not matrices:
            return original(table, schema)
        rest = original(table.drop_columns(list(matrices)), schema) if len(matrices) < table.num_columns else {}
        return {name: matrices[name] if name in matrices else rest[name] for name in table.column_names}

    convert.original = original
    return convert


def _install_fast_list_conversion() -> None:
    from petastorm import arrow_reader_worker

    if not hasattr(arrow_reader_worker.convert_arrow_table_to_numpy_dict, "original"):
        arrow_reader_worker.convert_arrow_table_to_numpy_dict = _list_columns_as_matrices(
            arrow_reader_worker.convert_arrow_table_to_numpy_dict)


def read_rows(paths: list[str], settings: ReadSettings, seed: tuple[int, ...]) -> Iterator[dict[str, np.ndarray]]:
    """The row groups of ``paths`` (each read once), as column dicts, in an order seeded by ``seed``."""
    from petastorm import make_batch_reader

    _install_fast_list_conversion()
    if not paths:
        return
    reader = make_batch_reader(
        list(paths),
        schema_fields=settings.columns,
        reader_pool_type="dummy",
        num_epochs=1,
        shuffle_row_groups=True,
        seed=int(np.random.default_rng(list(seed)).integers(2**31)),
    )
    try:
        for batch in reader:
            yield _arrays(batch)
    finally:
        reader.stop()
        reader.join()


LABEL, WEIGHT, RECORD = "__label", "__weight", "__record"


def training_arrays(schema: FeatureSchema, settings: ReadSettings, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A row group's columns as the few arrays training needs: the model inputs (``models.networks.model_inputs``:
    one dense float32 matrix, one int32 array per indexed column), label, weight and the recorded ids."""
    from dlpipe.models.networks import model_inputs

    rows = _rows(columns)
    arrays = dict(model_inputs(schema, columns))
    arrays[LABEL] = columns[schema.label].astype(np.float32)
    arrays[WEIGHT] = (columns[settings.weight_column].astype(np.float32) if settings.weight_column
                      else np.ones(rows, np.float32))
    if settings.class_weights is not None:
        negative, positive = settings.class_weights
        arrays[WEIGHT] = arrays[WEIGHT] * np.where(arrays[LABEL] > 0.5, positive, negative).astype(np.float32)
    if settings.record_column:
        arrays[RECORD] = columns[settings.record_column]
    return arrays


def shuffled_blocks(chunks: Iterator[dict[str, np.ndarray]], batch_size: int, rng: np.random.Generator,
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of batches, each array shaped ``(batches, rows per batch, ...)``: every chunk plus the rows carried
    over from the previous one is permuted and its full batches come out as one block (a reshape, no copy); the
    last rows of all make a final block of one smaller batch."""
    carry = None
    for chunk in chunks:
        data = _concat(carry, chunk)
        data = _take(data, rng.permutation(_rows(data)))
        full = _rows(data) // batch_size
        if full:
            yield {name: values[:full * batch_size].reshape(full, batch_size, *values.shape[1:])
                   for name, values in data.items()}
        carry = _take(data, slice(full * batch_size, None))
    if _rows(carry):
        yield {name: values[None] for name, values in carry.items()}


def rank_blocks(paths: list[str], steps: int | None, settings: ReadSettings, epoch: int, rank: int,
                ) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """This rank's batches for ``epoch`` in blocks ``(inputs, label, weight)``, each array shaped ``(batches,
    rows, ...)``: exactly ``steps`` batches in all when given (padding with one-row batches of weight 0), else as
    many as its rows make. ``tf.data`` slices the blocks into batches in C++ (``models.trainer``)."""
    rng = np.random.default_rng([settings.seed, epoch, rank])
    chunks = (training_arrays(settings.schema, settings, columns)
              for columns in read_rows(paths, settings, (settings.seed, epoch, rank)))
    recorded = []
    emitted = 0
    last = None
    for block in shuffled_blocks(chunks, settings.batch_size, rng):
        count = len(block[LABEL])
        if steps is not None and emitted + count > steps:
            raise RuntimeError(f"rank {rank} has more than the planned {steps} batches in epoch {epoch}")
        if RECORD in block:
            recorded.append(block.pop(RECORD).reshape(-1))
        last = block
        emitted += count
        yield _split(block)
    if settings.record_dir and settings.record_column:
        ids = np.concatenate(recorded) if recorded else np.array([], np.int64)
        np.save(Path(settings.record_dir) / f"epoch{epoch}-rank{rank}.npy", ids)
    if steps is None or emitted == steps:
        return
    if last is None:
        raise RuntimeError(f"rank {rank} read no rows in epoch {epoch} but must run {steps} steps")
    padding = {name: np.repeat(values[-1:, :1], steps - emitted, axis=0) for name, values in last.items()}
    padding[WEIGHT] = np.zeros_like(padding[WEIGHT])
    yield _split(padding)


def _split(block: dict[str, np.ndarray]) -> tuple[dict, np.ndarray, np.ndarray]:
    inputs = {name: values for name, values in block.items() if name not in (LABEL, WEIGHT, RECORD)}
    return inputs, block[LABEL], block[WEIGHT]


def rank_batches(paths: list[str], steps: int | None, settings: ReadSettings, epoch: int, rank: int,
                 ) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """``rank_blocks`` one batch at a time: ``(inputs, label, weight)`` with arrays shaped ``(rows, ...)``."""
    for inputs, label, weight in rank_blocks(paths, steps, settings, epoch, rank):
        for i in range(len(label)):
            yield {name: values[i] for name, values in inputs.items()}, label[i], weight[i]
