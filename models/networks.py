"""The model zoo: pure builders from settings and the feature schema to a ``tf.keras.Model``. No Spark, no I/O.

Every model takes the same inputs (``model_inputs``): ``dense`` (float32, the dense features concatenated in schema
order) and one int32 input per indexed categorical column, and outputs one score per row, shape (batch, 1):

- ``mlp``: a deep feed-forward network (depth and width, activation, dropout, L1/L2, batch norm) over the dense
  features and an embedding per indexed column; the score is the probability of the positive class (sigmoid).
- ``autoencoder``: a dense autoencoder of the dense features (categorical inputs are accepted and unused); the score
  is the anomaly score ``1 - exp(-mse)`` of the row's reconstruction error, in [0, 1) and monotone in the error,
  so AUC and a threshold work as for a probability. It trains by minimising the mean reconstruction error
  (``reconstruction_loss``); the label only enters its metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dlpipe.features.schema import DENSE_INPUT, FeatureSchema

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported inside the functions: the Spark driver imports these settings without paying for
# TensorFlow, and must not have run TensorFlow before horovod.spark.run forks it (see docs/design.md).

@dataclass(frozen=True)
class NetworkSettings:
    kind: Literal["mlp", "autoencoder"] = "mlp"
    hidden_units: tuple[int, ...] = (128, 64, 32)  # autoencoder: the encoder; the decoder mirrors it
    activation: str = "relu"
    dropout: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    batch_norm: bool = False
    embedding_dim: int | None = 8  # None: embedding_size(cardinality) per column
    seed: int = 1


def embedding_size(cardinality: int) -> int:
    """The rule of thumb of fast.ai's tabular models: min(50, round(1.6 * cardinality ** 0.56))."""
    return max(1, min(50, round(1.6 * cardinality ** 0.56)))


def _activation(name: str):
    import tensorflow as tf

    return tf.keras.layers.LeakyReLU(alpha=0.1) if name == "leaky_relu" else tf.keras.layers.Activation(name)


def _regularizer(settings: NetworkSettings):
    import tensorflow as tf

    if settings.l1 or settings.l2:
        return tf.keras.regularizers.L1L2(l1=settings.l1, l2=settings.l2)
    return None


def _dense_block(x, units: int, settings: NetworkSettings, name: str):
    import tensorflow as tf

    x = tf.keras.layers.Dense(units, kernel_regularizer=_regularizer(settings), name=name)(x)
    if settings.batch_norm:
        x = tf.keras.layers.BatchNormalization(name=f"{name}_norm")(x)
    x = _activation(settings.activation)(x)
    if settings.dropout > 0:
        x = tf.keras.layers.Dropout(settings.dropout, name=f"{name}_dropout")(x)
    return x


def _inputs(schema: FeatureSchema) -> dict:
    import tensorflow as tf

    inputs = {}
    if schema.dense:
        inputs[DENSE_INPUT] = tf.keras.Input(shape=(schema.dense_width,), dtype=tf.float32, name=DENSE_INPUT)
    for column in schema.index:
        inputs[column.name] = tf.keras.Input(shape=(), dtype=tf.int32, name=column.name)
    return inputs


def build_model(schema: FeatureSchema, settings: NetworkSettings) -> "tf.keras.Model":
    import tensorflow as tf

    tf.keras.utils.set_random_seed(settings.seed)
    if settings.kind == "autoencoder":
        return _autoencoder(schema, settings)
    inputs = _inputs(schema)
    parts = [inputs[DENSE_INPUT]] if schema.dense else []
    for column in schema.index:
        size = settings.embedding_dim or embedding_size(column.cardinality)
        embedded = tf.keras.layers.Embedding(column.cardinality, size, name=f"{column.name}_embedding")
        parts.append(embedded(inputs[column.name]))
    x = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(settings.hidden_units):
        x = _dense_block(x, units, settings, f"dense_{i}")
    output = tf.keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    return tf.keras.Model(inputs=inputs, outputs=output, name="mlp")


def _autoencoder(schema: FeatureSchema, settings: NetworkSettings) -> "tf.keras.Model":
    import tensorflow as tf

    if not schema.dense:
        raise ValueError("an autoencoder reconstructs the dense features, and the feature table has none")
    inputs = _inputs(schema)
    x = inputs[DENSE_INPUT]
    widths = list(settings.hidden_units)
    for i, units in enumerate(widths):
        x = _dense_block(x, units, settings, f"encoder_{i}")
    for i, units in enumerate(reversed(widths[:-1])):
        x = _dense_block(x, units, settings, f"decoder_{i}")
    reconstruction = tf.keras.layers.Dense(schema.dense_width, name="reconstruction")(x)
    # Built-in layers only (no Lambda), so the saved model loads without unsafe deserialisation.
    difference = tf.keras.layers.Subtract(name="difference")([inputs[DENSE_INPUT], reconstruction])
    squares = tf.keras.layers.Dot(axes=1, name="squared_error")([difference, difference])
    error = tf.keras.layers.Rescaling(-1.0 / schema.dense_width, name="minus_mse")(squares)
    survival = tf.keras.layers.Activation("exponential", name="exp_minus_mse")(error)
    score = tf.keras.layers.Rescaling(-1.0, offset=1.0, name="score")(survival)
    return tf.keras.Model(inputs=inputs, outputs=score, name="autoencoder")


def reconstruction_loss(y_true, y_pred):
    """The autoencoder's training loss: its reconstruction error, recovered from the score (the label is unused)."""
    import tensorflow as tf

    return tf.reduce_mean(-tf.math.log(tf.maximum(1.0 - y_pred, 1e-12)), axis=-1)


def loss_for(settings: NetworkSettings, loss: str):
    """The Keras loss: the autoencoder's reconstruction error, else ``bce`` or ``mse`` on the label."""
    if settings.kind == "autoencoder":
        return reconstruction_loss
    return {"bce": "binary_crossentropy", "mse": "mean_squared_error"}[loss]


def model_inputs(schema: FeatureSchema, columns: dict) -> dict:
    """Arrange per-column NumPy arrays (scalar columns 1-D, vector columns 2-D) into the model's input dict."""
    import numpy as np

    inputs = {}
    if schema.dense:
        parts = [np.asarray(columns[c.name], dtype=np.float32).reshape(-1, c.width) for c in schema.dense]
        inputs[DENSE_INPUT] = np.concatenate(parts, axis=1)
    for column in schema.index:
        inputs[column.name] = np.asarray(columns[column.name], dtype=np.int32)
    return inputs
