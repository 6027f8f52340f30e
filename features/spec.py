"""The feature spec: per input column, what the featurize stage does with it.

These are the resolved, per-column settings that fitting and applying work from; ``pipelines.config`` parses them
from the pipeline YAML (where several columns can share one entry). They are stored in every feature artifact, so
an artifact says exactly how its features were made.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from dlpipe.features.errors import FeatureError

SPLIT_COLUMN = "split"  # the feature table's partition column: train, validation or test

NumericTransform = Literal["standard", "minmax", "robust", "log", "none", "ple"]
MissingKind = Literal["mean", "median", "constant", "reject"]
CategoricalEncoding = Literal["index", "onehot"]
CategoricalMissing = Literal["fold", "value"]
LabelKind = Literal["binary"]

MAX_ONEHOT = 1000  # beyond this a dense one-hot vector is the wrong tool: index the column for an embedding
DEFAULT_PLE_BINS = 48  # as in rtdl_num_embeddings' examples (Gorishniy et al. 2022); at most this many bins per column
MAX_PLE_BINS = 256

NUMERIC_TRANSFORMS: tuple[str, ...] = NumericTransform.__args__
MISSING_KINDS: tuple[str, ...] = MissingKind.__args__


@dataclass(frozen=True)
class NumericFeature:
    """A numeric input column -> one float32 feature (plus a float32 ``<column>_missing`` indicator if asked).

    Order of operations: null, NaN and +/-inf are missing (for ``log``, so are values <= -1); present values are
    clipped to the training quantiles ``clip`` (if set); missing values are filled per ``missing`` (``reject``
    refuses them); then the transform scales the value with statistics of the training split.

    ``ple`` (piecewise-linear encoding, Gorishniy et al., NeurIPS 2022) is the one transform that gives a vector,
    ``<column>_ple``: the edges are ``bins + 1`` quantiles of the training values (fewer where they coincide), and
    a value in bin t encodes as [1, ..., 1, (x - left_t) / width_t, 0, ..., 0]; below the first edge the first slot
    goes negative and above the last the last slot exceeds 1, so no range is cut off.
    """

    column: str
    transform: NumericTransform = "standard"
    missing: MissingKind = "mean"
    fill_value: float | None = None  # the constant for missing == "constant"
    indicator: bool = False
    clip: tuple[float, float] | None = None  # lower and upper quantile of the training values
    bins: int = DEFAULT_PLE_BINS  # ple only: the number of quantile bins

    def __post_init__(self) -> None:
        if self.transform not in NUMERIC_TRANSFORMS:
            raise FeatureError(f"column {self.column!r}: unknown transform {self.transform!r} "
                               f"(choose one of {', '.join(NUMERIC_TRANSFORMS)})")
        if self.missing not in MISSING_KINDS:
            raise FeatureError(f"column {self.column!r}: unknown missing-value policy {self.missing!r} "
                               f"(choose one of {', '.join(MISSING_KINDS)})")
        if (self.missing == "constant") != (self.fill_value is not None):
            raise FeatureError(f"column {self.column!r}: a fill value goes with the 'constant' missing-value policy only")
        if self.clip is not None and not (0.0 <= self.clip[0] < self.clip[1] <= 1.0):
            raise FeatureError(f"column {self.column!r}: clip needs two quantiles 0 <= lower < upper <= 1, got {list(self.clip)}")
        if not 1 <= self.bins <= MAX_PLE_BINS:
            raise FeatureError(f"column {self.column!r}: bins must be between 1 and {MAX_PLE_BINS}, got {self.bins}")

    @property
    def output_column(self) -> str:
        return f"{self.column}_ple" if self.transform == "ple" else self.column

    @property
    def indicator_column(self) -> str | None:
        return f"{self.column}_missing" if self.indicator else None

    def bin_quantiles(self) -> tuple[float, ...]:
        """The quantiles whose values are a ``ple`` column's bin edges (none for other transforms)."""
        if self.transform != "ple":
            return ()
        return tuple(i / self.bins for i in range(self.bins + 1))

    def quantiles(self) -> tuple[float, ...]:
        """The quantiles of the training values this column's fit needs: the quartiles for ``robust``, the median
        for ``missing: median``, the clip bounds. Computed only when needed: they cost a pass of their own."""
        needed = set(self.clip or ())
        if self.transform == "robust":
            needed |= {0.25, 0.5, 0.75}
        if self.missing == "median":
            needed.add(0.5)
        needed |= set(self.bin_quantiles())
        return tuple(sorted(needed))


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical input column -> an int32 ``<column>_index`` (``index``) or a float32 vector
    ``<column>_onehot`` (``onehot``).

    Values are ranked by their training count (ties by value); those seen at least ``min_count`` times, at most
    ``top_k`` of them, get ids 1..n. Id 0 is reserved for everything else: rare values, values never seen in
    training and, with ``missing: fold``, nulls and empty strings. With ``missing: value`` nulls and empty strings
    are one category of their own, ranked like any other value. A one-hot vector has n + 1 slots, slot 0 the
    "other" slot.
    """

    column: str
    encoding: CategoricalEncoding = "index"
    min_count: int = 1
    top_k: int | None = None
    missing: CategoricalMissing = "fold"

    def __post_init__(self) -> None:
        if self.encoding not in ("index", "onehot"):
            raise FeatureError(f"column {self.column!r}: unknown encoding {self.encoding!r} (choose index or onehot)")
        if self.missing not in ("fold", "value"):
            raise FeatureError(f"column {self.column!r}: unknown missing policy {self.missing!r} (choose fold or value)")
        if self.min_count < 1 or (self.top_k is not None and self.top_k < 1):
            raise FeatureError(f"column {self.column!r}: min_count and top_k must be at least 1")
        if self.encoding == "onehot" and (self.top_k is None or self.top_k > MAX_ONEHOT):
            raise FeatureError(f"column {self.column!r}: onehot needs top_k of at most {MAX_ONEHOT} (the vector gets "
                               "top_k + 1 slots); index more values for an embedding instead")

    @property
    def output_column(self) -> str:
        return f"{self.column}_{self.encoding}"


DatetimePart = Literal["hour", "day_of_week", "day_of_month", "day_of_year", "month", "week_of_year", "ordinal_day"]
DatetimeEncoding = Literal["cyclic", "index", "onehot", "number"]
DATETIME_PARTS: tuple[str, ...] = DatetimePart.__args__
DATETIME_ENCODINGS: tuple[str, ...] = DatetimeEncoding.__args__
# The values each calendar part takes (Spark's hour, dayofweek with 1 = Sunday, dayofmonth, dayofyear, month and
# ISO weekofyear); the cyclic phase of value v is (v - low) / (high - low + 1) of a full turn.
PART_RANGE = {"hour": (0, 23), "day_of_week": (1, 7), "day_of_month": (1, 31), "day_of_year": (1, 366),
              "month": (1, 12), "week_of_year": (1, 53)}
DATE_FIELDS = ("year", "month", "day", "hour")  # the columns a date can be assembled from (hour optional)


@dataclass(frozen=True)
class DatetimeFeature:
    """One calendar part of a date or time -> one feature.

    The date comes from ``column`` (a timestamp, a date, or text Spark parses as a timestamp; read in UTC, the
    session's time zone) or is assembled from integer columns ``fields`` (year, month, day and optionally hour).
    A missing or invalid date is missing.

    Encodings: ``cyclic`` -> a float32 pair ``<name>_<part>_cyclic`` (sine and cosine of the phase; (0, 0) when
    missing), ``index`` -> an int32 id ``<name>_<part>_index`` for an embedding (value - low + 1; 0 when missing),
    ``onehot`` -> a float32 vector ``<name>_<part>_onehot`` of those ids, ``number`` -> a float32 ``<name>_<part>``
    z-scored with the training mean and deviation (the mean when missing). ``ordinal_day`` (days since
    1970-01-01, for trends) is always a number.
    """

    name: str
    part: DatetimePart
    encoding: DatetimeEncoding = "cyclic"
    column: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (field, column) pairs, fields from DATE_FIELDS

    def __post_init__(self) -> None:
        where = f"datetime feature {self.name!r}"
        if self.part not in DATETIME_PARTS:
            raise FeatureError(f"{where}: unknown part {self.part!r} (choose from {', '.join(DATETIME_PARTS)})")
        if self.encoding not in DATETIME_ENCODINGS:
            raise FeatureError(f"{where}: unknown encoding {self.encoding!r} for {self.part} "
                               f"(choose from {', '.join(DATETIME_ENCODINGS)})")
        if self.part == "ordinal_day" and self.encoding != "number":
            raise FeatureError(f"{where}: ordinal_day counts days for trends and is encoded as a number, "
                               f"not {self.encoding}")
        if (self.column is None) == (not self.fields):
            raise FeatureError(f"{where}: name either a column or the fields (year, month, day[, hour]) to build "
                               "the date from")
        named = dict(self.fields)
        unknown = sorted(set(named) - set(DATE_FIELDS))
        if unknown:
            raise FeatureError(f"{where}: unknown date field {unknown[0]!r} (the fields are {', '.join(DATE_FIELDS)})")
        if self.fields and not {"year", "month", "day"} <= set(named):
            raise FeatureError(f"{where}: building a date needs the year, month and day columns")
        if self.part == "hour" and self.fields and "hour" not in named:
            raise FeatureError(f"{where}: the hour part needs an hour column among the fields")

    @property
    def output_column(self) -> str:
        base = f"{self.name}_{self.part}"
        return base if self.encoding == "number" else f"{base}_{self.encoding}"

    @property
    def input_columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column is not None else tuple(dict.fromkeys(c for _, c in self.fields))

    @property
    def ids(self) -> int:
        """index and onehot: the number of ids, 0 (missing) included."""
        low, high = PART_RANGE[self.part]
        return high - low + 2


@dataclass(frozen=True)
class LabelSpec:
    """The label column. ``binary``: 0/1 (or false/true) numeric labels as they are, or, for a string label, the
    ``positive`` class -> 1 and every other value (only ``negative``, when given) -> 0. Regression and multi-class
    are further kinds with their own encoding and dtype."""

    column: str
    kind: LabelKind = "binary"
    positive: str | None = None
    negative: str | None = None

    def __post_init__(self) -> None:
        if self.kind != "binary":
            raise FeatureError(f"label {self.column!r}: kind {self.kind!r} is not supported yet (binary is)")
        if self.negative is not None and self.positive is None:
            raise FeatureError(f"label {self.column!r}: set positive as well as negative")


@dataclass(frozen=True)
class FeatureSpec:
    """All columns of one feature table."""

    label: LabelSpec
    numeric: tuple[NumericFeature, ...] = ()
    categorical: tuple[CategoricalFeature, ...] = ()
    passthrough: tuple[str, ...] = ()
    datetime: tuple[DatetimeFeature, ...] = ()

    def __post_init__(self) -> None:
        # A column may feed one numeric and one categorical feature (``hour`` as a number and as a category), and
        # any number of datetime parts; within numeric or categorical, one entry each.
        for kind, features in (("numeric", self.numeric), ("categorical", self.categorical)):
            columns = [f.column for f in features]
            for column in columns:
                if columns.count(column) > 1:
                    raise FeatureError(f"column {column!r} is listed twice under {kind}: keep one entry")
        inputs = [f.column for f in (*self.numeric, *self.categorical)]
        inputs += [c for f in self.datetime for c in f.input_columns]
        if self.label.column in inputs:
            raise FeatureError(f"the label column {self.label.column!r} cannot also be a feature")
        self.check_output_names()

    @property
    def feature_input_columns(self) -> tuple[str, ...]:
        """The input columns the features are made from."""
        return tuple(dict.fromkeys([*(f.column for f in self.numeric), *(f.column for f in self.categorical),
                                    *(c for f in self.datetime for c in f.input_columns)]))

    @property
    def input_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.passthrough, self.label.column, *self.feature_input_columns]))

    def output_columns(self) -> list[tuple[str, str]]:
        """(output column, where it comes from) for every column the feature table gets, in order."""
        out = [(c, f"passthrough column {c!r}") for c in self.passthrough]
        if self.label.column not in self.passthrough:
            out.append((self.label.column, "the label"))
        out += [(f.output_column, f"numeric column {f.column!r}") for f in self.numeric]
        out += [(f.indicator_column, f"the missing indicator of {f.column!r}") for f in self.numeric if f.indicator]
        out += [(f.output_column, f"the {f.encoding} encoding of {f.column!r}") for f in self.categorical]
        out += [(f.output_column, f"the {f.part} of datetime feature {f.name!r}") for f in self.datetime]
        return out

    def check_output_names(self, reserved: tuple[str, ...] = ()) -> None:
        """Fail if two output columns (or one and a ``reserved`` name such as the split column) share a name."""
        seen = {name: f"the reserved column {name!r}" for name in reserved}
        for name, origin in self.output_columns():
            if name in seen:
                raise FeatureError(
                    f"two feature table columns would be named {name!r}: {seen[name]} and {origin}; "
                    "rename the input column or drop one of them from the spec"
                )
            seen[name] = origin

    def to_json(self) -> dict:
        return {
            "label": asdict(self.label),
            "numeric": [{**asdict(f), "clip": list(f.clip) if f.clip else None} for f in self.numeric],
            "categorical": [asdict(f) for f in self.categorical],
            "passthrough": list(self.passthrough),
            "datetime": [{**asdict(f), "fields": [list(p) for p in f.fields]} for f in self.datetime],
        }

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSpec":
        return cls(
            label=LabelSpec(**data["label"]),
            numeric=tuple(NumericFeature(**{**f, "clip": tuple(f["clip"]) if f["clip"] else None}) for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(**f) for f in data["categorical"]),
            passthrough=tuple(data["passthrough"]),
            datetime=tuple(DatetimeFeature(**{**f, "fields": tuple(tuple(p) for p in f["fields"])})
                           for f in data.get("datetime", ())),
        )
