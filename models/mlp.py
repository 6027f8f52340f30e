"""A deep feed-forward network over numeric features and embedded categorical indices. Pure: no Spark, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.schema import NUMERIC_INPUT, FeatureSchema

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported inside the functions: the Spark driver imports this module's settings without paying for
# TensorFlow, and must not have run TensorFlow before horovod.spark.run forks it (see STACK.md).


@dataclass(frozen=True)
class MlpSettings:
    hidden_units: tuple[int, ...] = (128, 64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    embedding_dim: int = 8
    seed: int = 1


def _activation(name: str):
    import tensorflow as tf

    return tf.keras.layers.LeakyReLU(alpha=0.1) if name == "leaky_relu" else tf.keras.layers.Activation(name)


def build_model(schema: FeatureSchema, settings: MlpSettings) -> "tf.keras.Model":
    """Inputs: ``numeric`` (float32, one value per numeric feature) and one int32 ``<column>_index`` input per
    categorical column. Output: the probability of the positive class, shape (batch, 1)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(settings.seed)
    inputs = {}
    parts = []
    if schema.numeric:
        inputs[NUMERIC_INPUT] = tf.keras.Input(shape=(len(schema.numeric),), dtype=tf.float32, name=NUMERIC_INPUT)
        parts.append(inputs[NUMERIC_INPUT])
    for column, name in zip(schema.categorical, schema.index_columns):
        inputs[name] = tf.keras.Input(shape=(), dtype=tf.int32, name=name)
        embedded = tf.keras.layers.Embedding(schema.cardinalities[column], settings.embedding_dim, name=f"{column}_embedding")(inputs[name])
        parts.append(embedded)
    x = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(settings.hidden_units):
        x = tf.keras.layers.Dense(units, name=f"dense_{i}")(x)
        x = _activation(settings.activation)(x)
        if settings.dropout > 0:
            x = tf.keras.layers.Dropout(settings.dropout)(x)
    output = tf.keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return tf.keras.Model(inputs=inputs, outputs=output, name="mlp")


def model_inputs(schema: FeatureSchema, columns: dict) -> dict:
    """Arrange per-column arrays or tensors (name -> 1-D) into the model's input dict."""
    import tensorflow as tf

    inputs = {}
    if schema.numeric:
        stack = tf.stack if isinstance(columns[schema.numeric[0]], tf.Tensor) else _np_stack
        inputs[NUMERIC_INPUT] = stack([columns[c] for c in schema.numeric], axis=1)
    for name in schema.index_columns:
        inputs[name] = columns[name]
    return inputs


def _np_stack(arrays, axis):
    import numpy as np

    return np.stack(arrays, axis=axis).astype("float32")
