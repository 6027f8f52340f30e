"""Spark column expressions shared by fitting and applying, so both see a value the same way: what counts as
missing, how a categorical value is normalised, how a calendar part is read, how the label is encoded."""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.features.errors import FeatureError
from dlpipe.features.spec import DatetimeFeature, LabelSpec, NumericFeature


LOG_FLOOR = -1.0  # a ``log`` feature's values at or below it are missing (log1p is undefined there)


def numeric_value(feature: NumericFeature) -> Column:
    """The column as double, null where it is missing: null, NaN, +/-inf, and for ``log`` values <= -1."""
    value = F.col(feature.column).cast("double")
    present = value.isNotNull() & ~F.isnan(value) & (F.abs(value) != float("inf"))
    if feature.transform == "log":
        present = present & (value > LOG_FLOOR)
    return F.when(present, value)


def out_of_log_domain(feature: NumericFeature) -> Column:
    """True where a finite value is <= -1 (log1p is undefined there)."""
    value = F.col(feature.column).cast("double")
    return ~F.isnan(value) & (value > float("-inf")) & (value <= LOG_FLOOR)


def categorical_value(column: str) -> Column:
    """The column as a string; empty strings become null (missing)."""
    value = F.col(column).cast("string")
    return F.when(value != "", value)


def _timestamp(feature: DatetimeFeature, dtype: T.DataType | None) -> Column:
    """The feature's date as a timestamp, null where missing or invalid (text that does not parse, February 30)."""
    if feature.column is not None:
        value = F.col(feature.column)
        return F.try_to_timestamp(value) if isinstance(dtype, T.StringType) else value.cast("timestamp")
    fields = {name: F.col(column).try_cast("int") for name, column in feature.fields}
    return F.try_make_timestamp(fields["year"], fields["month"], fields["day"], F.lit(0), F.lit(0),
                                F.lit(0).cast("decimal(16,6)"))


def datetime_part(feature: DatetimeFeature, dtype: T.DataType | None = None) -> Column:
    """The calendar part as an int (``ordinal_day``: days since 1970-01-01), null where the date is missing.
    ``dtype`` is the type of ``feature.column`` (text is parsed, other types cast)."""
    if feature.part == "hour" and feature.fields:
        hour = F.col(dict(feature.fields)["hour"]).try_cast("int")
        return F.when(hour.between(0, 23), hour)
    return _PARTS[feature.part](_timestamp(feature, dtype))


_PARTS = {
    "hour": F.hour, "day_of_week": F.dayofweek, "day_of_month": F.dayofmonth, "day_of_year": F.dayofyear,
    "month": F.month, "week_of_year": F.weekofyear, "ordinal_day": lambda ts: F.unix_date(F.to_date(ts)),
}


def check_label_type(label: LabelSpec, dtype: T.DataType) -> None:
    if isinstance(dtype, T.StringType) and label.positive is None:
        raise FeatureError(
            f"label column {label.column!r} holds strings: set featurize.label.positive (and optionally negative) "
            "to name its classes"
        )
    if not isinstance(dtype, (T.StringType, T.NumericType, T.BooleanType)):
        raise FeatureError(f"label column {label.column!r} is {dtype.simpleString()}: a binary label must be numeric, "
                           "boolean or string")


def encoded_label(label: LabelSpec, dtype: T.DataType) -> Column:
    """The label as int 1 / 0, null where the value is outside the declared classes (or null)."""
    check_label_type(label, dtype)
    if isinstance(dtype, T.BooleanType):
        value = F.col(label.column).cast("int").cast("string")
    elif isinstance(dtype, T.NumericType):
        value = F.col(label.column).cast("double")
    else:
        value = F.col(label.column).cast("string")
    if label.positive is None:
        positive, negative = "1", "0"
    else:
        positive, negative = label.positive, label.negative
    numeric = isinstance(dtype, T.NumericType)
    if numeric:
        try:
            positive, negative = float(positive), None if negative is None else float(negative)
        except ValueError:
            raise FeatureError(f"label column {label.column!r} is {dtype.simpleString()}, but its classes "
                               f"{label.positive!r} / {label.negative!r} are not numbers: fix featurize.label") from None
    pos = F.lit(positive)
    is_negative = value.isNotNull() if negative is None else value == F.lit(negative)
    return F.when(value == pos, F.lit(1)).when(is_negative, F.lit(0))


def describe_classes(label: LabelSpec) -> str:
    if label.positive is None:
        return "the binary classes 0 and 1"
    if label.negative is None:
        return f"the classes {label.positive!r} (positive) and any other non-null value (negative)"
    return f"the classes {label.positive!r} (positive) and {label.negative!r} (negative)"
