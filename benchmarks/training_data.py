"""The feature table the training benchmarks share: the demo pipeline's generate and featurize stages on ``rows``
generated rows, in var/bench/training-<rows>/ (made once, kept between runs), and plain pyarrow readers of its
files for the baselines."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def data_dir(rows: int) -> Path:
    return REPO / "var" / "bench" / f"training-{rows}"


def settings(rows: int) -> list[str]:
    """The demo config's overrides for ``rows`` generated rows (``dlpipe --set`` takes them as they are)."""
    return [f"data_dir={data_dir(rows)}", f"generate.rows={rows}", f"generate.partitions={max(8, rows // 125_000)}"]


def config(rows: int, *overrides: str):
    from dlpipe.pipelines.config import load_config

    return load_config(REPO / "conf" / "demo.yaml", [*settings(rows), *overrides])


def prepare(spark, cfg, train_model: bool = False) -> None:
    """Generate and featurize (and with ``train_model``, train) unless this folder already holds the table for
    these rows."""
    from dlpipe.pipelines import featurize, generate, train

    marker = cfg.data_path / "prepared.json"
    if marker.is_file() and json.loads(marker.read_text()).get("rows") == cfg.generate.rows:
        return
    generate.run(spark, cfg)
    featurize.run(spark, cfg)
    if train_model:
        train.run(spark, cfg)
    marker.write_text(json.dumps({"rows": cfg.generate.rows}) + "\n")


def feature_files(spark, cfg):
    """(feature schema, training files, validation files) of the feature table train reads."""
    from dlpipe.pipelines.train import training_inputs

    inputs = training_inputs(spark, cfg)
    return inputs.schema, inputs.train_files, inputs.validation_files


def local_path(uri: str) -> str:
    return uri.removeprefix("file:")


def read_numpy(schema, paths: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All rows of ``paths`` as the model's NumPy inputs and float32 labels, read with pyarrow (the fastest
    plain way: whole files, vector columns flattened without Python objects)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dlpipe.models.networks import model_inputs

    columns = list(dict.fromkeys([*schema.feature_columns, schema.label]))
    parts: list[dict[str, np.ndarray]] = []
    for path in paths:
        table = pq.read_table(local_path(path), columns=columns)
        arrays = {}
        for name in columns:
            column = table.column(name).combine_chunks()
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
                arrays[name] = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
            else:
                arrays[name] = column.to_numpy(zero_copy_only=False)
        parts.append(arrays)
    merged = {name: np.concatenate([p[name] for p in parts]) for name in columns}
    return model_inputs(schema, merged), merged[schema.label].astype(np.float32)
