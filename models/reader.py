"""One rank's batches for one epoch: Petastorm reads the rank's files of the epoch plan into NumPy batches for
``tf.data``.

- Petastorm's single-threaded ``dummy`` pool reads the files (its thread pool returned empty shards here, see
  STACK.md), one epoch per reader, row groups in a seeded order.
- Rows are shuffled within a buffer: each row group is concatenated with the rows left over from the previous one
  and permuted (seeded by seed, epoch and rank) before it is cut into batches.
- Each batch is ``(inputs, label, weight)``: ``inputs`` as ``models.networks.model_inputs`` arranges them, the label
  as float32, and the sample weight (the configured weight column, else 1). After the rank's last row, padding
  batches of one row with weight 0 fill up to the plan's steps (``models.epochs``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from features.schema import FeatureSchema


@dataclass(frozen=True)
class ReadSettings:
    schema: FeatureSchema
    batch_size: int
    seed: int
    weight_column: str | None = None
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


def read_rows(paths: list[str], settings: ReadSettings, seed: tuple[int, ...]) -> Iterator[dict[str, np.ndarray]]:
    """The row groups of ``paths`` (each read once), as column dicts, in an order seeded by ``seed``."""
    from petastorm import make_batch_reader

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


def shuffled_batches(chunks: Iterator[dict[str, np.ndarray]], batch_size: int, rng: np.random.Generator,
                     ) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` rows (the last may be smaller), rows permuted within each chunk plus carry-over."""
    carry = None
    for chunk in chunks:
        data = _concat(carry, chunk)
        data = _take(data, rng.permutation(_rows(data)))
        full = _rows(data) // batch_size
        for i in range(full):
            yield _take(data, slice(i * batch_size, (i + 1) * batch_size))
        carry = _take(data, slice(full * batch_size, None))
    if _rows(carry):
        yield carry


def rank_batches(paths: list[str], steps: int | None, settings: ReadSettings, epoch: int, rank: int,
                 ) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """This rank's ``(inputs, label, weight)`` batches for ``epoch``: exactly ``steps`` of them when given
    (padding with weight-0 batches), else as many as its rows make."""
    from models.networks import model_inputs

    schema = settings.schema
    rng = np.random.default_rng([settings.seed, epoch, rank])
    chunks = read_rows(paths, settings, (settings.seed, epoch, rank))
    recorded = []
    emitted = 0
    last = None
    for columns in shuffled_batches(chunks, settings.batch_size, rng):
        if steps is not None and emitted == steps:
            raise RuntimeError(f"rank {rank} has more than the planned {steps} batches in epoch {epoch}")
        if settings.record_column:
            recorded.append(columns[settings.record_column])
        weight = (columns[settings.weight_column].astype(np.float32) if settings.weight_column
                  else np.ones(_rows(columns), np.float32))
        last = columns
        emitted += 1
        yield model_inputs(schema, columns), columns[schema.label].astype(np.float32), weight
    if settings.record_dir and settings.record_column:
        ids = np.concatenate(recorded) if recorded else np.array([], np.int64)
        np.save(Path(settings.record_dir) / f"epoch{epoch}-rank{rank}.npy", ids)
    if steps is None:
        return
    if last is None and emitted < steps:
        raise RuntimeError(f"rank {rank} read no rows in epoch {epoch} but must run {steps} steps")
    padding = _take(last, slice(0, 1)) if last is not None else None
    while emitted < steps:
        emitted += 1
        yield model_inputs(schema, padding), padding[schema.label].astype(np.float32), np.zeros(1, np.float32)
