import numpy as np
import pytest

from features.schema import FeatureSchema
from models.mlp import MlpSettings, build_model, model_inputs

SCHEMA = FeatureSchema(label="y", numeric=("a", "b", "c"), categorical=("region", "trigger"),
                       cardinalities={"region": 6, "trigger": 101})


def test_inputs_outputs_and_embeddings():
    model = build_model(SCHEMA, MlpSettings(hidden_units=(16, 8), embedding_dim=4))
    assert sorted(model.input_names) == ["numeric", "region_index", "trigger_index"]
    assert model.get_layer("trigger_embedding").input_dim == 101
    assert model.get_layer("trigger_embedding").output_dim == 4
    assert [model.get_layer(f"dense_{i}").units for i in range(2)] == [16, 8]
    columns = {"a": np.zeros(5), "b": np.ones(5), "c": np.ones(5),
               "region_index": np.array([0, 1, 2, 3, 5]), "trigger_index": np.array([0, 100, 3, 4, 5])}
    out = model.predict(model_inputs(SCHEMA, columns), verbose=0)
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
