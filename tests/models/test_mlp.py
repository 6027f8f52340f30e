import numpy as np
import pytest

from features.schema import FeatureColumn, FeatureSchema
from models.mlp import MlpSettings, build_model, model_inputs

SCHEMA = FeatureSchema(label="y", features=(
    FeatureColumn("a", "dense", "float32"),
    FeatureColumn("b", "dense", "float32"),
    FeatureColumn("region_onehot", "dense", "float32", (4,)),
    FeatureColumn("c", "dense", "float32"),
    FeatureColumn("trigger_index", "index", "int32", (), 101),
))


def test_inputs_outputs_and_embeddings():
    model = build_model(SCHEMA, MlpSettings(hidden_units=(16, 8), embedding_dim=4))
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


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "leaky_relu"])
def test_activations_and_dropout_build(activation):
    model = build_model(SCHEMA, MlpSettings(hidden_units=(4,), activation=activation, dropout=0.2))
    assert model.output_shape == (None, 1)


def test_same_seed_same_weights():
    first = build_model(SCHEMA, MlpSettings(seed=3)).get_weights()
    second = build_model(SCHEMA, MlpSettings(seed=3)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
