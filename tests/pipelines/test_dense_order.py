"""The scorer packs a row's dense features in the order training packs them: a vector before a scalar (a
piecewise-linear feature before a missing indicator, a one-hot category before a number-encoded date part) stays
where the schema puts it."""
import numpy as np

from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.models.networks import model_inputs
from dlpipe.features.apply import dense_vector


def test_scoring_packs_dense_features_in_the_order_training_reads_them(spark):
    schema = FeatureSchema("y", (
        FeatureColumn("x_ple", "dense", "float32", (3,)), FeatureColumn("a", "dense", "float32"),
        FeatureColumn("b", "dense", "float32"), FeatureColumn("c_index", "index", "int32", (), 5),
        FeatureColumn("c_onehot", "dense", "float32", (2,)), FeatureColumn("day", "dense", "float32")))
    row = {"x_ple": [1.0, 0.5, 0.0], "a": 2.0, "b": 3.0, "c_index": 4, "c_onehot": [0.0, 1.0], "day": 5.0}
    df = spark.createDataFrame([tuple(row.values())], "x_ple array<float>, a float, b float, c_index int, "
                                                      "c_onehot array<float>, day float")
    scored = df.select(dense_vector(schema)).first()[0]
    trained = model_inputs(schema, {k: np.array([v]) for k, v in row.items()})["dense"][0]
    assert scored == trained.tolist() == [1.0, 0.5, 0.0, 2.0, 3.0, 0.0, 1.0, 5.0]
