"""Exact statistics and encodings of fit_features / apply_features on tiny frames."""
import math

import pytest
from pyspark.sql import functions as F

from dlpipe.features.apply import apply_features
from dlpipe.features.errors import FeatureError
from dlpipe.features.fit import fit_features
from dlpipe.features.fitted import FittedFeatures
from dlpipe.features.spec import CategoricalFeature, FeatureSpec, LabelSpec, NumericFeature

LABEL = LabelSpec("y")
INF, NAN = float("inf"), float("nan")


def spec(numeric=(), categorical=(), label=LABEL, passthrough=("id",)):
    return FeatureSpec(label, tuple(numeric), tuple(categorical), passthrough)


def frame(spark, column_type, values, labels=None, name="x"):
    labels = labels or [i % 2 for i in range(len(values))]
    rows = [(i, v, y) for i, (v, y) in enumerate(zip(values, labels))]
    return spark.createDataFrame(rows, f"id int, {name} {column_type}, y int")


def features_by_id(df, fitted, column):
    return {r["id"]: r[column] for r in apply_features(df, fitted).collect()}


# ------------------------------------------------------------------------------------------------ numeric


def test_standard_statistics_and_values(spark):
    df = frame(spark, "double", [1.0, 2.0, 3.0, None, NAN, INF, -INF, 6.0])
    fitted, report = fit_features(df, spec([NumericFeature("x")]))
    x = fitted.numeric["x"]
    std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4)
    assert (x.count, x.missing, x.min, x.max, x.mean) == (4, 4, 1.0, 6.0, 3.0)
    assert x.std == pytest.approx(std) and (x.center, x.fill) == (3.0, 3.0) and x.scale == x.std
    assert report.missing["x"] == {"train": 4} and report.rows == {"train": 8}
    out = features_by_id(df, fitted, "x")
    assert out[0] == pytest.approx((1 - 3) / std, rel=1e-6)
    assert [out[i] for i in (3, 4, 5, 6)] == [0.0, 0.0, 0.0, 0.0]  # null, NaN, +inf, -inf -> the mean


def test_moments_of_values_near_the_largest_double_do_not_overflow(spark):
    """Ten values of 1e308 among small ones: their sum overflows a double, and the column once went unscaled into
    the feature table as float32 infinity (every row then scored the same)."""
    import numpy as np

    values = [1e308] * 10 + [float(i) for i in range(90)] + [NAN, INF, -INF]
    df = frame(spark, "double", values)
    fitted, _ = fit_features(df, spec([NumericFeature("x")]))
    x = fitted.numeric["x"]
    present = np.array(values[:100]) / 1e308
    assert x.mean == pytest.approx(present.mean() * 1e308) and x.std == pytest.approx(present.std() * 1e308)
    scaled = {r["id"]: r["x"] for r in apply_features(df, fitted, check_finite=True).collect()}
    assert all(math.isfinite(v) for v in scaled.values())
    assert scaled[0] == pytest.approx((1e308 - x.mean) / x.std, rel=1e-6)


def test_a_feature_value_beyond_float32_fails_the_job_when_checked(spark):
    from dlpipe.pipelines.errors import spark_failure

    df = frame(spark, "double", [1.0, 2.0, 1e300])
    fitted, _ = fit_features(df, spec([NumericFeature("x", "none")]))
    assert apply_features(df, fitted).collect()[2]["x"] == INF  # unchecked: scoring keeps its rows
    with pytest.raises(Exception) as err:
        apply_features(df, fitted, check_finite=True).collect()
    assert spark_failure(err.value) == (
        "feature x of column 'x' is infinite for some rows (a value beyond float32's range of 3.4e38 once scaled): "
        "clip the column (clip: [0.001, 0.999]) or fix the input")


def test_constant_column_is_centred_not_divided_by_zero(spark):
    df = frame(spark, "double", [5.0] * 4)
    fitted, _ = fit_features(df, spec([NumericFeature("x")]))
    assert (fitted.numeric["x"].std, fitted.numeric["x"].scale) == (0.0, 1.0)
    assert set(features_by_id(df, fitted, "x").values()) == {0.0}
    scoring = frame(spark, "double", [7.0])
    assert features_by_id(scoring, fitted, "x") == {0: 2.0}


def test_minmax_and_robust(spark):
    df = frame(spark, "double", [10.0, 20.0, 30.0, 40.0, 50.0])
    fitted, _ = fit_features(df, spec([NumericFeature("x", "minmax")]))
    assert features_by_id(df, fitted, "x") == {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    fitted, _ = fit_features(df, spec([NumericFeature("x", "robust")]))
    assert fitted.numeric["x"].quantiles == {"0.25": 20.0, "0.5": 30.0, "0.75": 40.0}
    assert (fitted.numeric["x"].center, fitted.numeric["x"].scale) == (30.0, 20.0)
    assert features_by_id(df, fitted, "x") == {0: -1.0, 1: -0.5, 2: 0.0, 3: 0.5, 4: 1.0}


def test_log_transform(spark):
    e = math.e
    df = frame(spark, "double", [0.0, e - 1, e * e - 1, None])
    fitted, _ = fit_features(df, spec([NumericFeature("x", "log")]))
    x = fitted.numeric["x"]
    assert x.log_mean == pytest.approx(1.0) and x.log_std == pytest.approx(math.sqrt(2 / 3))
    out = features_by_id(df, fitted, "x")
    assert [round(out[i], 5) for i in range(4)] == [round(v / math.sqrt(2 / 3), 5) for v in (-1, 0, 1, 0)]


def test_log_refuses_values_outside_its_domain(spark):
    df = frame(spark, "double", [0.0, 3.0, -2.0, -5.0])
    with pytest.raises(FeatureError) as err:
        fit_features(df, spec([NumericFeature("x", "log")]))
    assert str(err.value) == (
        "column 'x' has 2 training values <= -1, where log1p is undefined; choose another transform or shift the column"
    )


def test_missing_policies_and_indicator(spark):
    df = frame(spark, "double", [1.0, 2.0, 10.0, None])
    median, _ = fit_features(df, spec([NumericFeature("x", "none", "median", indicator=True)]))
    assert features_by_id(df, median, "x") == {0: 1.0, 1: 2.0, 2: 10.0, 3: 2.0}
    assert features_by_id(df, median, "x_missing") == {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0}
    constant, _ = fit_features(df, spec([NumericFeature("x", "none", "constant", fill_value=-1.0)]))
    assert features_by_id(df, constant, "x")[3] == -1.0
    mean, _ = fit_features(df, spec([NumericFeature("x", "none", "mean")]))
    assert features_by_id(df, mean, "x")[3] == pytest.approx(13 / 3)


def test_reject_policy_counts_offending_rows(spark):
    df = frame(spark, "double", [1.0, None, NAN, 4.0, INF])
    with pytest.raises(FeatureError) as err:
        fit_features(df, spec([NumericFeature("x", missing="reject")]))
    assert str(err.value) == (
        "column 'x' has 3 rows with a missing value (null, NaN or infinite) and its missing-value policy is reject; "
        "clean the input or choose mean, median or constant"
    )


def test_reject_guards_scoring_rows(spark):
    fitted, _ = fit_features(frame(spark, "double", [1.0, 2.0]), spec([NumericFeature("x", missing="reject")]))
    with pytest.raises(Exception, match="column 'x' has a missing value and its missing-value policy is reject"):
        apply_features(frame(spark, "double", [None]), fitted).collect()


def test_clip_to_training_quantiles(spark):
    values = [float(v) for v in range(1, 100)] + [10_000.0]
    df = frame(spark, "double", values)
    fitted, _ = fit_features(df, spec([NumericFeature("x", "none", clip=(0.0, 0.98))]))
    x = fitted.numeric["x"]
    assert x.clip_bounds == (1.0, 98.0)
    assert x.max == 98.0 and x.mean == pytest.approx((sum(range(1, 99)) + 98 + 98) / 100)
    out = features_by_id(df, fitted, "x")
    assert out[99] == 98.0 and out[98] == 98.0 and out[0] == 1.0


def test_column_all_missing_in_training_is_constant_zero(spark):
    df = frame(spark, "double", [None, None, None])
    fitted, _ = fit_features(df, spec([NumericFeature("x")]))
    assert (fitted.numeric["x"].count, fitted.numeric["x"].mean, fitted.numeric["x"].fill) == (0, None, 0.0)
    assert set(features_by_id(df, fitted, "x").values()) == {0.0}


# ------------------------------------------------------------------------------------------------ categorical


CATEGORIES = ["a", "b", "a", "c", "b", "a", None, "", "d", "c"]


def test_index_vocabulary_min_count_and_reserved_id(spark):
    df = frame(spark, "string", CATEGORIES, name="c")
    fitted, report = fit_features(df, spec(categorical=[CategoricalFeature("c", min_count=2)]))
    vocabulary = fitted.vocabularies["c"]
    assert (vocabulary.values, vocabulary.counts) == (("a", "b", "c"), (3, 2, 2))  # ties broken by value
    assert (vocabulary.distinct, vocabulary.folded_rows, vocabulary.size) == (4, 3, 4)  # d, null and "" fold
    assert report.missing["c"] == {"train": 2} and report.other["c"] == {"train": 3}
    out = features_by_id(df, fitted, "c_index")
    assert [out[i] for i in range(10)] == [1, 2, 1, 3, 2, 1, 0, 0, 0, 3]
    scoring = frame(spark, "string", ["b", "never-seen", None], name="c")
    assert features_by_id(scoring, fitted, "c_index") == {0: 2, 1: 0, 2: 0}


def test_missing_as_its_own_value_and_top_k(spark):
    df = frame(spark, "string", CATEGORIES, name="c")
    fitted, _ = fit_features(df, spec(categorical=[CategoricalFeature("c", missing="value", top_k=3)]))
    # null and "" are one value (2 rows), ranked with the others; ties by value with missing first
    assert fitted.vocabularies["c"].values == ("a", None, "b")
    out = features_by_id(df, fitted, "c_index")
    assert [out[i] for i in range(10)] == [1, 3, 1, 0, 3, 1, 2, 2, 0, 0]


def test_onehot_vector_with_other_slot(spark):
    df = frame(spark, "string", CATEGORIES, name="c")
    fitted, _ = fit_features(df, spec(categorical=[CategoricalFeature("c", "onehot", min_count=2, top_k=2)]))
    assert fitted.vocabularies["c"].values == ("a", "b")
    assert fitted.schema.features[0].shape == (3,)
    out = features_by_id(df, fitted, "c_onehot")
    assert out[0] == [0.0, 1.0, 0.0] and out[1] == [0.0, 0.0, 1.0] and out[3] == [1.0, 0.0, 0.0]
    assert apply_features(df, fitted).schema["c_onehot"].dataType.simpleString() == "array<float>"


def test_integer_categorical(spark):
    df = frame(spark, "int", [7, 7, 3], name="c")
    fitted, _ = fit_features(df, spec(categorical=[CategoricalFeature("c")]))
    assert fitted.vocabularies["c"].values == ("7", "3")
    assert features_by_id(df, fitted, "c_index") == {0: 1, 1: 1, 2: 2}


def test_heavy_skew_and_ten_thousand_values(spark):
    """95% of rows share one value, the rest spread over 12,000 values; a log-normal heavy-tailed numeric column."""
    from pyspark.sql import functions as F

    rows = 240_000
    df = spark.range(rows).select(
        F.col("id").cast("int").alias("id"),
        F.when(F.col("id") % 20 != 0, F.lit("hot")).otherwise(F.concat(F.lit("v"), (F.col("id") / 20 % 12_000).cast("int").cast("string"))).alias("c"),
        F.exp(F.randn(3) * 3).alias("x"),
        (F.col("id") % 2).cast("int").alias("y"),
    ).repartition(7)
    features = [CategoricalFeature("c", min_count=1)]
    fitted, report = fit_features(df, spec([NumericFeature("x", "log")], features))
    vocabulary = fitted.vocabularies["c"]
    assert vocabulary.values[0] == "hot" and vocabulary.counts[0] == rows - rows // 20
    assert len(vocabulary.values) == 12_001 and vocabulary.folded_rows == 0
    assert set(vocabulary.counts[1:]) == {1}
    rare, _ = fit_features(df, spec(categorical=[CategoricalFeature("c", min_count=2)]))
    assert rare.vocabularies["c"].values == ("hot",) and rare.vocabularies["c"].folded_rows == rows // 20
    out = apply_features(df, fitted).agg(F.max(F.abs("x")).alias("m"), F.max("c_index").alias("i")).first()
    assert out["m"] < 10 and out["i"] == 12_001  # log1p + z-score tames a tail spanning ~8 orders of magnitude
    assert report.rows == {"train": rows}


# ------------------------------------------------------------------------------------------------ label, splits


def test_string_label_classes(spark):
    df = spark.createDataFrame([(1, 1.0, "s"), (2, 2.0, "b"), (3, 3.0, "s")], "id int, x double, Label string")
    label = LabelSpec("Label", positive="s", negative="b")
    fitted, report = fit_features(df, spec([NumericFeature("x")], label=label))
    assert report.positives == {"train": 2}
    assert features_by_id(df, fitted, "Label") == {1: 1, 2: 0, 3: 1}


def test_label_outside_classes_shows_examples(spark):
    df = spark.createDataFrame([(1, 1.0, "s"), (2, 2.0, "b"), (3, 3.0, "x"), (4, 1.0, None)], "id int, x double, Label string")
    with pytest.raises(FeatureError) as err:
        fit_features(df, spec([NumericFeature("x")], label=LabelSpec("Label", positive="s", negative="b")))
    assert str(err.value) == (
        "label column 'Label' has 2 rows outside the classes 's' (positive) and 'b' (negative) "
        "(for example ['x', None]); fix the input or featurize.label"
    )
    numeric = frame(spark, "double", [1.0, 2.0, 3.0], labels=[0, 1, 2])
    with pytest.raises(FeatureError, match=r"^label column 'y' has 1 rows outside the binary classes 0 and 1 \(for example \[2\]\)"):
        fit_features(numeric, spec([NumericFeature("x")]))


def test_string_label_needs_its_classes(spark):
    df = spark.createDataFrame([(1, 1.0, "s")], "id int, x double, y string")
    with pytest.raises(FeatureError) as err:
        fit_features(df, spec([NumericFeature("x")]))
    assert str(err.value) == ("label column 'y' holds strings: set featurize.label.positive (and optionally negative) "
                              "to name its classes")


def test_fits_on_the_training_split_only_and_reports_every_split(spark):
    rows = [(1, 1.0, "a", 0, "train"), (2, 3.0, "a", 1, "train"), (3, 100.0, "z", 1, "validation"),
            (4, None, "a", 0, "test"), (5, 5.0, None, 1, "test")]
    df = spark.createDataFrame(rows, "id int, x double, c string, y int, split string")
    fitted, report = fit_features(df, spec([NumericFeature("x")], [CategoricalFeature("c")]), split_column="split")
    assert fitted.numeric["x"].mean == 2.0 and fitted.vocabularies["c"].values == ("a",)
    assert fitted.train_rows == 2
    assert report.rows == {"train": 2, "validation": 1, "test": 2}
    assert report.positives == {"train": 1, "validation": 1, "test": 1}
    assert report.missing == {"x": {"train": 0, "validation": 0, "test": 1}, "c": {"train": 0, "validation": 0, "test": 1}}
    assert report.other["c"] == {"train": 0, "validation": 1, "test": 1}
    assert report.unseen["c"] == {"train": 0, "validation": 1, "test": 0}


def test_empty_input_and_empty_training_split(spark):
    empty = spark.createDataFrame([], "id int, x double, y int, split string")
    with pytest.raises(FeatureError, match=r"^table t has no rows: nothing to featurize \(check the input\)$"):
        fit_features(empty, spec([NumericFeature("x")]), "split", source="table t")
    no_train = spark.createDataFrame([(1, 1.0, 0, "test")], "id int, x double, y int, split string")
    with pytest.raises(FeatureError, match=r"^the training split of the input is empty"):
        fit_features(no_train, spec([NumericFeature("x")]), "split")


# ------------------------------------------------------------------------------------------------ contract


FULL_SPEC = spec(
    [NumericFeature("x", indicator=True), NumericFeature("k", "robust", "median", clip=(0.1, 0.9))],
    [CategoricalFeature("c", min_count=2), CategoricalFeature("r", "onehot", top_k=3, missing="value")],
)
FULL_SCHEMA = "id int, x double, k double, c string, r string, y int"
FULL_ROWS = [(i, float(i) if i % 5 else None, float(i % 7), "abc"[i % 3] if i % 4 else None, "pq"[i % 2], i % 2)
             for i in range(40)]


def test_artifact_round_trip_gives_byte_identical_features(spark):
    df = spark.createDataFrame(FULL_ROWS, FULL_SCHEMA)
    fitted, _ = fit_features(df, FULL_SPEC)
    again = FittedFeatures.from_json(fitted.to_json())
    assert again == fitted
    first, second = apply_features(df, fitted).collect(), apply_features(df, again).collect()
    assert sorted(first) == sorted(second)
    assert apply_features(df, fitted).dtypes == [
        ("id", "int"), ("y", "int"), ("x", "float"), ("k", "float"), ("x_missing", "float"), ("c_index", "int"),
        ("r_onehot", "array<float>")]
    fitted.schema.check(apply_features(df, fitted), "the features")


def test_missing_column_is_named(spark):
    df = spark.createDataFrame([(1, 1.0, "a", "p", 0)], "id int, x double, c string, r string, y int")
    with pytest.raises(FeatureError) as err:
        fit_features(df, FULL_SPEC, source="table dlpipe.raw")
    assert str(err.value) == (
        "column 'k' from the feature spec is not in table dlpipe.raw (its columns: id, x, c, r, y); "
        "fix the spec or the input"
    )


def test_string_declared_numeric_is_named(spark):
    df = spark.createDataFrame([(1, "1.0", 2.0, "a", "p", 0)], "id int, x string, k double, c string, r string, y int")
    with pytest.raises(FeatureError) as err:
        fit_features(df, FULL_SPEC)
    assert str(err.value) == (
        "column 'x' is declared numeric but is string in the input; list it under categorical or cast it in the input"
    )


def test_schema_drift_against_artifact_is_refused(spark):
    fitted, _ = fit_features(spark.createDataFrame(FULL_ROWS, FULL_SCHEMA), FULL_SPEC)
    drifted = spark.createDataFrame([(1, 1, 5.0, "a", "p", 0)], "id int, x int, k double, c string, r string, y int")
    with pytest.raises(FeatureError) as err:
        apply_features(drifted, fitted, source="path /data/new", artifact="feature artifact features/v3")
    assert str(err.value) == (
        "the schema of path /data/new differs from the one feature artifact features/v3 was fitted on: x is int, "
        "was double; cast the input back or fit a new artifact with `dlpipe featurize`"
    )


def test_two_columns_with_one_name_after_encoding():
    with pytest.raises(FeatureError) as err:
        spec([NumericFeature("c_index")], [CategoricalFeature("c")])
    assert str(err.value) == (
        "two feature table columns would be named 'c_index': numeric column 'c_index' and the index encoding of 'c'; "
        "rename the input column or drop one of them from the spec"
    )


# ------------------------------------------------------------------------------------------------ piecewise-linear


def test_piecewise_linear_encoding_of_quantile_bins(spark):
    df = frame(spark, "double", [float(v) for v in range(101)] + [None])
    fitted, _ = fit_features(df, spec([NumericFeature("x", "ple", bins=4)]))
    assert fitted.numeric["x"].edges == (0.0, 25.0, 50.0, 75.0, 100.0)
    assert fitted.schema.features[0].name == "x_ple" and fitted.schema.features[0].shape == (4,)
    scoring = frame(spark, "double", [-25.0, 0.0, 30.0, 100.0, 150.0, None])
    out = features_by_id(scoring, fitted, "x_ple")
    assert out[0] == [-1.0, 0.0, 0.0, 0.0]  # below the first edge: only the first slot goes negative
    assert out[1] == [0.0, 0.0, 0.0, 0.0]
    assert out[2] == pytest.approx([1.0, 0.2, 0.0, 0.0])
    assert out[3] == [1.0, 1.0, 1.0, 1.0]
    assert out[4] == [1.0, 1.0, 1.0, 3.0]  # above the last edge: only the last slot exceeds 1
    assert out[5] == pytest.approx([1.0, 1.0, 0.0, 0.0])  # missing -> the mean, 50
    again = FittedFeatures.from_json(fitted.to_json())
    assert again == fitted


def test_piecewise_linear_bins_collapse_where_quantiles_coincide(spark):
    df = frame(spark, "double", [0.0] * 90 + [1.0] * 10)
    fitted, _ = fit_features(df, spec([NumericFeature("x", "ple", bins=8)]))
    assert fitted.numeric["x"].edges == (0.0, 1.0)
    constant, _ = fit_features(frame(spark, "double", [3.0] * 5), spec([NumericFeature("x", "ple")]))
    assert constant.numeric["x"].edges == (3.0, 4.0)
    assert set(map(tuple, features_by_id(frame(spark, "double", [3.0]), constant, "x_ple").values())) == {(0.0,)}


# ------------------------------------------------------------------------------------------------ dates and times


def test_datetime_parts_from_a_timestamp_and_from_fields(spark):
    from dlpipe.features.spec import DatetimeFeature
    rows = [(0, "2013-01-01 05:00:00", 2013, 1, 1, 5, 0),       # a Tuesday
            (1, "2013-12-31 23:00:00", 2013, 12, 31, 23, 1),
            (2, "not a time", 2013, 2, 30, 25, 0),             # text that does not parse; February 30; hour 25
            (3, None, None, None, None, None, 1)]
    df = spark.createDataFrame(rows, "id int, t string, year long, month int, day int, hour int, y int")
    fields = (("year", "year"), ("month", "month"), ("day", "day"), ("hour", "hour"))
    features = [DatetimeFeature("t", "hour", "cyclic", column="t"),
                DatetimeFeature("t", "day_of_week", "onehot", column="t"),
                DatetimeFeature("dep", "day_of_year", "index", fields=fields),
                DatetimeFeature("dep", "hour", "index", fields=fields),
                DatetimeFeature("dep", "ordinal_day", "number", fields=fields)]
    fitted, report = fit_features(df, FeatureSpec(LABEL, passthrough=("id",), datetime=tuple(features)))
    out = {r["id"]: r for r in apply_features(df, fitted).collect()}
    assert [c.name for c in fitted.schema.features] == [
        "t_hour_cyclic", "t_day_of_week_onehot", "dep_day_of_year_index", "dep_hour_index", "dep_ordinal_day"]
    angle = 2 * math.pi * 5 / 24
    assert out[0]["t_hour_cyclic"] == pytest.approx([math.sin(angle), math.cos(angle)], abs=1e-6)
    assert out[2]["t_hour_cyclic"] == out[3]["t_hour_cyclic"] == [0.0, 0.0]
    assert out[0]["t_day_of_week_onehot"] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # Tuesday: day 3, id 3
    assert [out[i]["dep_day_of_year_index"] for i in range(4)] == [1, 365, 0, 0]
    assert [out[i]["dep_hour_index"] for i in range(4)] == [6, 24, 0, 0]
    days = [15706, 16070]  # 2013-01-01 and 2013-12-31 since 1970-01-01
    stats = fitted.datetime["dep_ordinal_day"]
    assert (stats.count, stats.missing, stats.mean) == (2, 2, sum(days) / 2)
    assert [out[i]["dep_ordinal_day"] for i in range(4)] == [-1.0, 1.0, 0.0, 0.0]
    assert report.missing["dep_hour_index"] == {"train": 2}
    assert FittedFeatures.from_json(fitted.to_json()) == fitted
    fitted.schema.check(apply_features(df, fitted), "the features")


def test_one_column_feeds_a_number_a_category_and_calendar_parts(spark):
    from dlpipe.features.spec import DatetimeFeature
    df = spark.createDataFrame([(i, i % 24, f"2013-01-{1 + i % 28:02d}", i % 2) for i in range(48)],
                               "id int, hour int, d string, y int")
    both = FeatureSpec(LABEL, (NumericFeature("hour"),), (CategoricalFeature("hour"),), ("id",),
                       (DatetimeFeature("d", "day_of_month", "index", column="d"),
                        DatetimeFeature("d", "day_of_week", "cyclic", column="d")))
    fitted, _ = fit_features(df, both)
    assert [c.name for c in fitted.schema.features] == ["hour", "hour_index", "d_day_of_month_index",
                                                        "d_day_of_week_cyclic"]
    with pytest.raises(FeatureError, match="column 'hour' is listed twice under numeric: keep one entry"):
        spec([NumericFeature("hour"), NumericFeature("hour", "ple")])


def test_datetime_column_of_the_wrong_type_is_named(spark):
    from dlpipe.features.spec import DatetimeFeature
    df = spark.createDataFrame([(1, 1.5, 0)], "id int, t double, y int")
    with pytest.raises(FeatureError) as err:
        fit_features(df, FeatureSpec(LABEL, passthrough=("id",), datetime=(DatetimeFeature("t", "hour", column="t"),)))
    assert str(err.value) == ("column 't' of datetime feature 't' is double in the input; it must be a timestamp, a "
                              "date or text (or name its year, month, day and hour columns as fields)")


# ------------------------------------------------------------------------------------------------ drift profile


def test_the_training_profile_counts_the_training_split_or_a_sample_of_it(spark, monkeypatch):
    """fit_features keeps the training split's drift profile: every training row, or beyond
    features.fit.TRAINING_SAMPLE rows a uniform sample of about that many; its numeric bins are cut at the
    training split's deciles, so each holds about a tenth of the values."""
    import dlpipe.features.fit as fit

    values = [float(i % 1000) for i in range(4000)]
    df = frame(spark, "double", values).withColumn("c", F.when(F.col("id") % 4 == 0, None).otherwise("v"))
    spec_ = spec([NumericFeature("x")], [CategoricalFeature("c")])
    fitted, _ = fit_features(df, spec_)
    counts = fitted.training_profile.counts
    assert counts.rows == 4000 and counts.numeric["x"].present == 4000
    below = counts.numeric["x"].below  # at the minimum, the 9 deciles and the maximum
    assert len(below) == 11 and all(390 <= b - a <= 410 for a, b in zip(below[1:-1], below[2:-1]))
    assert counts.categorical["c"].missing == 1000 and counts.categorical["c"].tracked == (3000,)
    assert FittedFeatures.from_json(fitted.to_json()).training_profile == fitted.training_profile

    monkeypatch.setattr(fit, "TRAINING_SAMPLE", 1000)
    sampled, _ = fit_features(df, spec_)
    assert 800 < sampled.training_profile.counts.rows < 1200 and sampled.train_rows == 4000
