import math

import pytest

from features.errors import FeatureError
from features.schema import FeatureSchema
from features.transform import FeatureSpec, FittedFeatures, apply_features, fit_features

SPEC = FeatureSpec(label="y", numeric=("x", "k"), categorical=("c",), passthrough=("id",), min_count=2)
SCHEMA = "id int, x double, k double, c string, y int"


@pytest.fixture
def train(spark):
    rows = [
        (1, 1.0, 5.0, "a", 0),
        (2, 2.0, 5.0, "b", 1),
        (3, 3.0, 5.0, "a", 0),
        (4, None, 5.0, "b", 1),
        (5, float("nan"), 5.0, "a", 1),
        (6, float("inf"), 5.0, "z", 0),
        (7, 6.0, 5.0, None, 1),
    ]
    return spark.createDataFrame(rows, SCHEMA)


def test_fit_exact_statistics_and_vocabulary(train):
    fitted = fit_features(train, SPEC)
    x = fitted.numeric["x"]
    assert x.count == 4  # null, NaN and inf are not counted
    assert x.mean == pytest.approx(3.0)
    assert x.std == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4))
    assert fitted.numeric["k"].std == 0.0
    assert fitted.vocabularies["c"] == ("a", "b")  # 'z' seen once < min_count 2; null is not a value
    assert fitted.vocabulary_counts["c"] == (3, 2)
    assert fitted.train_rows == 7
    assert fitted.schema == FeatureSchema("y", ("x", "k"), ("c",), {"c": 3}, ("id",))


def test_apply_exact_values_and_types(spark, train):
    fitted = fit_features(train, SPEC)
    out = apply_features(train, fitted)
    assert out.dtypes == [("id", "int"), ("y", "int"), ("x", "float"), ("k", "float"), ("c_index", "int")]
    std = fitted.numeric["x"].std
    rows = {r["id"]: r for r in out.collect()}
    assert rows[1]["x"] == pytest.approx((1 - 3) / std, rel=1e-6)
    assert rows[4]["x"] == 0.0 and rows[5]["x"] == 0.0 and rows[6]["x"] == 0.0  # null, NaN, inf -> mean
    assert all(r["k"] == 0.0 for r in rows.values())  # constant column: centred, not divided by zero
    assert [rows[i]["c_index"] for i in range(1, 8)] == [1, 2, 1, 2, 1, 0, 0]
    scoring = spark.createDataFrame([(9, 2.0, 1.0, "never-seen", None)], SCHEMA)
    scored = apply_features(scoring, fitted).first()
    assert scored["c_index"] == 0 and scored["k"] == pytest.approx(-4.0)


def test_artifact_round_trip_gives_identical_features(train):
    fitted = fit_features(train, SPEC)
    again = FittedFeatures.from_json(fitted.to_json())
    assert again == fitted
    assert apply_features(train, fitted).exceptAll(apply_features(train, again)).count() == 0


def test_missing_column_is_named(spark):
    df = spark.createDataFrame([(1, 1.0, "a", 0)], "id int, x double, c string, y int")
    with pytest.raises(FeatureError) as err:
        fit_features(df, SPEC)
    assert str(err.value) == (
        "column 'k' from the feature spec is not in the input (input columns: id, x, c, y); fix the spec or the input"
    )


def test_string_declared_numeric_is_named(spark):
    df = spark.createDataFrame([(1, "1.0", 2.0, "a", 0)], "id int, x string, k double, c string, y int")
    with pytest.raises(FeatureError) as err:
        fit_features(df, SPEC)
    assert str(err.value) == "column 'x' is declared numeric but is string; list it under categorical or cast it in the input"


def test_schema_drift_against_artifact_is_refused(spark, train):
    fitted = fit_features(train, SPEC)
    drifted = spark.createDataFrame([(1, 1, 5.0, "a", 0)], "id int, x int, k double, c string, y int")
    with pytest.raises(FeatureError) as err:
        apply_features(drifted, fitted)
    assert str(err.value) == (
        "the input's schema differs from the one the feature artifact was fitted on: x is int, was double"
    )


def test_empty_training_split(spark):
    with pytest.raises(FeatureError, match="the training split is empty"):
        fit_features(spark.createDataFrame([], SCHEMA), SPEC)
