import numpy as np
import pytest

from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.models.networks import NetworkSettings, build_model, embedding_size, model_inputs

SCHEMA = FeatureSchema(label="y", features=(
    FeatureColumn("a", "dense", "float32"),
    FeatureColumn("b", "dense", "float32"),
    FeatureColumn("region_onehot", "dense", "float32", (4,)),
    FeatureColumn("c", "dense", "float32"),
    FeatureColumn("trigger_index", "index", "int32", (), 101),
))


def test_inputs_outputs_and_embeddings():
    model = build_model(SCHEMA, NetworkSettings(hidden_units=(16, 8), embedding_dim=4))
    assert sorted(model.input_names) == ["dense", "trigger_index"]
    assert model.get_layer("dense").input_shape == [(None, 7)]  # 3 scalars + a 4-slot one-hot vector
    assert model.get_layer("trigger_index_embedding").input_dim == 101
    assert model.get_layer("trigger_index_embedding").output_dim == 4
    assert [model.get_layer(f"dense_{i}").units for i in range(2)] == [16, 8]
    onehot = np.eye(4)[[0, 1, 2, 3, 0]]
    columns = {"a": np.zeros(5), "b": np.ones(5), "c": np.full(5, 2.0), "region_onehot": onehot,
               "trigger_index": np.array([0, 100, 3, 4, 5])}
    inputs = model_inputs(SCHEMA, columns)
    assert inputs["dense"].dtype == np.float32
    assert inputs["dense"][1].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 2.0]  # schema order: a, b, onehot, c
    out = model.predict(inputs, verbose=0)
    assert out.shape == (5, 1)
    assert np.all((out > 0) & (out < 1))


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.1 * x),
}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_hidden_layers_apply_the_activation_and_dropout_asked_for(activation):
    import tensorflow as tf

    model = build_model(SCHEMA, NetworkSettings(hidden_units=(64,), activation=activation, dropout=0.5, seed=2))
    dropout = model.get_layer("dense_0_dropout")
    assert dropout.rate == 0.5
    hidden = tf.keras.Model(model.inputs, [model.get_layer("dense_0").output, dropout.input, dropout.output])
    rng = np.random.default_rng(1)
    inputs = model_inputs(SCHEMA, {"a": rng.normal(size=32), "b": rng.normal(size=32), "c": rng.normal(size=32),
                                   "region_onehot": np.eye(4)[rng.integers(0, 4, 32)],
                                   "trigger_index": rng.integers(0, 101, 32)})
    linear, activated, _ = (t.numpy() for t in hidden(inputs, training=False))
    np.testing.assert_allclose(activated, ACTIVATIONS[activation](linear), rtol=1e-5, atol=1e-6)
    dropped = hidden(inputs, training=True)[2].numpy()
    kept = dropped != 0
    assert 0.3 < kept[activated != 0].mean() < 0.7  # about half the units dropped while training
    np.testing.assert_allclose(dropped[kept], activated[kept] * 2, rtol=1e-5)  # the rest scaled by 1 / (1 - 0.5)


def test_same_seed_same_weights():
    first = build_model(SCHEMA, NetworkSettings(seed=3)).get_weights()
    second = build_model(SCHEMA, NetworkSettings(seed=3)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_regularisation_batch_norm_and_embedding_rule():
    model = build_model(SCHEMA, NetworkSettings(hidden_units=(8, 4), l1=1e-4, l2=1e-3, batch_norm=True, embedding_dim=None))
    assert model.get_layer("dense_0").kernel_regularizer is not None
    assert model.get_layer("dense_1_norm").__class__.__name__ == "BatchNormalization"
    assert model.get_layer("trigger_index_embedding").output_dim == embedding_size(101) == 21
    assert embedding_size(10_000) == 50 and embedding_size(2) == 2
    assert len(model.losses) == 2  # one L1/L2 penalty per hidden layer


def test_autoencoder_scores_reconstruction_error():
    import tensorflow as tf

    model = build_model(SCHEMA, NetworkSettings(kind="autoencoder", hidden_units=(6, 3)))
    assert [model.get_layer(n).units for n in ("encoder_0", "encoder_1", "decoder_0", "reconstruction")] == [6, 3, 6, 7]
    rng = np.random.default_rng(0)
    columns = {"a": rng.normal(size=8), "b": rng.normal(size=8), "c": rng.normal(size=8),
               "region_onehot": np.eye(4)[rng.integers(0, 4, 8)], "trigger_index": np.arange(8)}
    inputs = model_inputs(SCHEMA, columns)
    score = model.predict(inputs, verbose=0)[:, 0]
    reconstruction = tf.keras.Model(model.inputs, model.get_layer("reconstruction").output).predict(inputs, verbose=0)
    mse = np.mean((inputs["dense"] - reconstruction) ** 2, axis=1)
    np.testing.assert_allclose(score, 1 - np.exp(-mse), rtol=1e-5, atol=1e-6)
