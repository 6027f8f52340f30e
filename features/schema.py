"""The feature table's schema contract: which columns the writer produces and the reader, trainer and scorer expect.

Numeric features are float32 scalars with the input column's name; categorical features are int32 indices (0 is
reserved for unseen, rare and missing values) named ``<column>_index``. Both Petastorm and the Spark scoring UDF
read exactly these columns, in this order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from features.errors import FeatureError

SPLIT_COLUMN = "split"
UNSEEN_INDEX = 0
NUMERIC_INPUT = "numeric"  # the model input that takes the numeric features stacked in order


def index_column(categorical: str) -> str:
    return f"{categorical}_index"


@dataclass(frozen=True)
class FeatureSchema:
    """Columns of a feature table. ``cardinalities`` gives the embedding input size per categorical column."""

    label: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    cardinalities: dict[str, int] = field(default_factory=dict)
    passthrough: tuple[str, ...] = ()

    @property
    def index_columns(self) -> tuple[str, ...]:
        return tuple(index_column(c) for c in self.categorical)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """What the model reads, in order: numeric columns, then categorical index columns."""
        return self.numeric + self.index_columns

    def spark_types(self) -> dict[str, T.DataType]:
        types: dict[str, T.DataType] = {c: T.FloatType() for c in self.numeric}
        types.update({c: T.IntegerType() for c in self.index_columns})
        types[self.label] = T.IntegerType()
        return types

    def check(self, df: DataFrame, where: str) -> None:
        """Fail with the differing columns named if ``df`` does not carry this contract's columns and types."""
        actual = {f.name: f.dataType for f in df.schema.fields}
        problems = []
        for name, expected in self.spark_types().items():
            if name not in actual:
                problems.append(f"{name} is missing")
            elif actual[name] != expected:
                problems.append(f"{name} is {actual[name].simpleString()}, expected {expected.simpleString()}")
        if problems:
            raise FeatureError(f"{where} does not match the feature schema: " + "; ".join(problems))

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "cardinalities": dict(self.cardinalities),
            "passthrough": list(self.passthrough),
        }

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSchema":
        return cls(
            label=data["label"],
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            cardinalities={k: int(v) for k, v in data["cardinalities"].items()},
            passthrough=tuple(data["passthrough"]),
        )
