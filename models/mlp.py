"""A deep feed-forward network over numeric features and embedded categorical indices. Pure: no Spark, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.schema import DENSE_INPUT, FeatureSchema

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
    """Inputs: ``dense`` (float32, every dense feature concatenated in schema order) and one int32 input per index
    feature, embedded. Output: the probability of the positive class, shape (batch, 1)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(settings.seed)
    inputs = {}
    parts = []
    if schema.dense:
        inputs[DENSE_INPUT] = tf.keras.Input(shape=(schema.dense_width,), dtype=tf.float32, name=DENSE_INPUT)
        parts.append(inputs[DENSE_INPUT])
    for column in schema.index:
        inputs[column.name] = tf.keras.Input(shape=(), dtype=tf.int32, name=column.name)
        embedded = tf.keras.layers.Embedding(column.cardinality, settings.embedding_dim, name=f"{column.name}_embedding")
        parts.append(embedded(inputs[column.name]))
    x = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(settings.hidden_units):
        x = tf.keras.layers.Dense(units, name=f"dense_{i}")(x)
        x = _activation(settings.activation)(x)
        if settings.dropout > 0:
            x = tf.keras.layers.Dropout(settings.dropout)(x)
    output = tf.keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return tf.keras.Model(inputs=inputs, outputs=output, name="mlp")


def model_inputs(schema: FeatureSchema, columns: dict) -> dict:
    """Arrange per-column arrays or tensors (scalar columns 1-D, vector columns 2-D) into the model's input dict."""
    import numpy as np
    import tensorflow as tf

    inputs = {}
    if schema.dense:
        if isinstance(columns[schema.dense[0].name], tf.Tensor):
            parts = [tf.reshape(tf.cast(columns[c.name], tf.float32), (-1, c.width)) for c in schema.dense]
            inputs[DENSE_INPUT] = tf.concat(parts, axis=1)
        else:
            parts = [np.asarray(columns[c.name], dtype=np.float32).reshape(-1, c.width) for c in schema.dense]
            inputs[DENSE_INPUT] = np.concatenate(parts, axis=1)
    for column in schema.index:
        inputs[column.name] = columns[column.name]
    return inputs
