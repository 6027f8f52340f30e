"""The feature table's schema contract: which columns the writer produces and the reader, trainer and scorer expect.

Every feature column has a name, a dtype and a shape, and is one of two kinds:

- ``dense``: float32 scalars (scaled numeric values, missing indicators) and float32 vectors (one-hot encodings).
  The model reads all dense columns, in order, concatenated into one input named ``dense``.
- ``index``: int32 scalar ids of a categorical column, 0 reserved for rare, unseen and folded-missing values; the
  model embeds each one (``cardinality`` ids).

Petastorm, the trainer and the Spark scoring UDF all read exactly these columns, in this order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from dlpipe.features.errors import FeatureError
from dlpipe.features.spec import SPLIT_COLUMN

__all__ = ["SPLIT_COLUMN", "UNSEEN_INDEX", "DENSE_INPUT", "FeatureColumn", "FeatureSchema"]
UNSEEN_INDEX = 0
DENSE_INPUT = "dense"  # the model input that takes every dense feature, concatenated in order

_SPARK_TYPES = {"float32": T.FloatType(), "int32": T.IntegerType()}


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    kind: Literal["dense", "index"]
    dtype: Literal["float32", "int32"]
    shape: tuple[int, ...] = ()  # () for a scalar, (n,) for a vector
    cardinality: int | None = None  # index columns: the number of ids, 0 included

    @property
    def width(self) -> int:
        return self.shape[0] if self.shape else 1

    def spark_type(self) -> T.DataType:
        scalar = _SPARK_TYPES[self.dtype]
        return T.ArrayType(scalar, containsNull=False) if self.shape else scalar

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "dtype": self.dtype, "shape": list(self.shape)}
        if self.cardinality is not None:
            out["cardinality"] = self.cardinality
        return out

    @classmethod
    def from_json(cls, data: dict) -> "FeatureColumn":
        return cls(data["name"], data["kind"], data["dtype"], tuple(data["shape"]), data.get("cardinality"))


@dataclass(frozen=True)
class FeatureSchema:
    """Columns of a feature table: the label, the features in model order, and passthrough columns."""

    label: str
    features: tuple[FeatureColumn, ...]
    passthrough: tuple[str, ...] = ()
    label_dtype: Literal["int32", "float32"] = "int32"

    @property
    def dense(self) -> tuple[FeatureColumn, ...]:
        return tuple(c for c in self.features if c.kind == "dense")

    @property
    def index(self) -> tuple[FeatureColumn, ...]:
        return tuple(c for c in self.features if c.kind == "index")

    @property
    def dense_width(self) -> int:
        return sum(c.width for c in self.dense)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features)

    def spark_types(self) -> dict[str, T.DataType]:
        types = {c.name: c.spark_type() for c in self.features}
        types[self.label] = _SPARK_TYPES[self.label_dtype]
        return types

    def check(self, df: DataFrame, where: str, label: bool = True) -> None:
        """Fail with the differing columns named if ``df`` does not carry this contract's columns and types (the
        label's too, unless ``label`` is false: rows to score need not have one)."""
        actual = {f.name: f.dataType for f in df.schema.fields}
        problems = []
        for name, expected in self.spark_types().items():
            if name == self.label and not label:
                continue
            if name not in actual:
                problems.append(f"{name} is missing")
            elif actual[name] != expected:
                # Array columns read back from Parquet may say containsNull=true: compare element types.
                a, e = actual[name], expected
                if isinstance(a, T.ArrayType) and isinstance(e, T.ArrayType) and a.elementType == e.elementType:
                    continue
                problems.append(f"{name} is {a.simpleString()}, expected {e.simpleString()}")
        if problems:
            raise FeatureError(f"{where} does not match the feature schema: " + "; ".join(problems))

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "label_dtype": self.label_dtype,
            "features": [c.to_json() for c in self.features],
            "passthrough": list(self.passthrough),
        }

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSchema":
        return cls(
            label=data["label"],
            features=tuple(FeatureColumn.from_json(c) for c in data["features"]),
            passthrough=tuple(data["passthrough"]),
            label_dtype=data["label_dtype"],
        )
