"""The configuration schema: every section and key of a pipeline config, as frozen, typed dataclasses whose
``__post_init__`` checks the values. ``pipelines.config.loader`` reads the YAML layers into them.

A check that fails raises ``_FieldError(key, message)``; the loader turns it into a :class:`ConfigError` that names
the dotted key and the file that set it. The value types of the feature entries (transforms, missing-value
policies, encodings) are the feature spec's own (``features.spec``).
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dlpipe.features.errors import FeatureError
from dlpipe.features.synthetic import CATEGORICAL as SYNTHETIC_CATEGORICAL
from dlpipe.features.synthetic import NUMERIC as SYNTHETIC_NUMERIC
from dlpipe.features.spec import (DATETIME_PARTS, DEFAULT_PLE_BINS, MAX_ONEHOT, MAX_PLE_BINS, SPLIT_COLUMN,
                                  CategoricalEncoding, CategoricalFeature, CategoricalMissing, DatetimeEncoding,
                                  DatetimeFeature, FeatureSpec, LabelKind, LabelSpec, MissingKind, NumericFeature,
                                  NumericTransform)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY = re.compile(r"^[1-9][0-9]*([kmgtp]b?|b)?$", re.IGNORECASE)  # what the JVM and Spark take: 4g, 512m, 2gb
DEFAULTS = "built-in defaults"


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the key and where it was set."""


class _FieldError(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise _FieldError(key, message)


def _plain_columns(key: str, names) -> None:
    """Input column names that Spark's column expressions take as they are (``a.b`` reads as a struct field)."""
    odd = [n for n in names if n and ("." in n or "`" in n)]
    _require(not odd, key, f"column {odd[0] if odd else ''!r} has a dot or a backtick in its name, which Spark "
             "reads as a struct field or a quote: rename the column in the input (or in a view over it)")


def _positive(obj: Any, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        _require(value is None or value > 0, key, f"must be greater than 0, got {value!r}")
        _require(value is None or math.isfinite(value), key, f"must be a finite number, got {value!r}")


def _identifier(obj: Any, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        _require(
            value is None or bool(IDENTIFIER.match(value)),
            key,
            f"must be a plain SQL identifier (letters, digits, underscore; not starting with a digit), got {value!r}",
        )


# --------------------------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class SparkConfig:
    """How the Spark session is built. ``master: null`` leaves master and resources to spark-submit."""

    master: str | None = "local[*]"
    app_name: str = "dlpipe"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(self, "shuffle_partitions")
        _require(bool(MEMORY.match(str(self.driver_memory))), "driver_memory",
                 f"must be an amount of memory such as 4g or 512m, got {self.driver_memory!r}")


@dataclass(frozen=True)
class TableSource:
    """A table to read: a metastore table name, or a path to Parquet or Delta files."""

    table: str | None = None
    path: str | None = None
    format: Literal["delta", "parquet"] = "delta"

    def __post_init__(self) -> None:
        _require((self.table is None) != (self.path is None), "table", "give exactly one of 'table' or 'path'")
        _identifier(self, "table")

    def describe(self) -> str:
        return f"table {self.table}" if self.table else f"{self.format} path {self.path}"


@dataclass(frozen=True)
class ColumnShift:
    """How ``generate`` moves one column away from the generator's distribution, to test drift: a numeric value
    becomes ``value * scale + mean``; ``missing`` of the values become null; ``new_values`` of a categorical
    column's values become values the generator never makes."""

    mean: float = 0.0
    scale: float = 1.0
    missing: float = 0.0
    new_values: float = 0.0

    def __post_init__(self) -> None:
        for key in ("missing", "new_values"):
            _require(0.0 <= getattr(self, key) <= 1.0, key, f"must be a share in [0, 1], got {getattr(self, key)!r}")


@dataclass(frozen=True)
class GenerateConfig:
    """The synthetic HIGGS-shaped data set (see features.synthetic)."""

    rows: int = 100_000
    seed: int = 7
    partitions: int = 8
    null_rate: float = 0.01
    output_table: str = "raw_events"
    shift: dict[str, ColumnShift] = field(default_factory=dict)  # column -> its shift (drifted data for tests)

    def __post_init__(self) -> None:
        _positive(self, "rows", "partitions")
        _require(0.0 <= self.null_rate < 1.0, "null_rate", f"must be in [0, 1), got {self.null_rate!r}")
        _identifier(self, "output_table")
        for column, shift in self.shift.items():
            _require(column in SYNTHETIC_NUMERIC or column in SYNTHETIC_CATEGORICAL, "shift",
                     f"{column}: not a generated feature column (numeric: {', '.join(SYNTHETIC_NUMERIC)}; "
                     f"categorical: {', '.join(SYNTHETIC_CATEGORICAL)})")
            numeric = column in SYNTHETIC_NUMERIC
            _require(numeric or (shift.mean, shift.scale) == (0.0, 1.0), "shift",
                     f"{column} is categorical: shift it with missing or new_values, not mean or scale")
            _require(not numeric or shift.new_values == 0.0, "shift",
                     f"{column} is numeric: shift it with mean, scale or missing, not new_values")


@dataclass(frozen=True)
class SplitConfig:
    """Deterministic train / validation / test split by hashing the key column with a seed."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    seed: int = 17

    def __post_init__(self) -> None:
        for key in ("train", "validation", "test"):
            value = getattr(self, key)
            _require(0.0 <= value <= 1.0, key, f"must be a fraction in [0, 1], got {value!r}")
        total = self.train + self.validation + self.test
        _require(abs(total - 1.0) < 1e-9, "train", f"train + validation + test must be 1, got {total:g}")
        _require(self.train > 0, "train", "must be greater than 0: the model needs training rows")


@dataclass(frozen=True)
class LabelConfig:
    """The label column; ``label: name`` is short for ``label: {column: name}``. A string label names its
    ``positive`` class (and optionally the ``negative`` one: other values are then refused)."""

    column: str = "label"
    kind: LabelKind = "binary"
    positive: str | None = None
    negative: str | None = None

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"column": value}
        if isinstance(value, dict):  # classes may be written as numbers or booleans: compare them as text
            return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
                    for k, v in value.items()}
        return value


@dataclass(frozen=True)
class MissingConfig:
    """A numeric column's missing-value policy: ``mean``, ``median``, ``reject`` or ``{constant: x}``."""

    kind: MissingKind = "mean"
    value: float | None = None

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict) and list(value) == ["constant"]:
            return {"kind": "constant", "value": value["constant"]}
        return value

    def __post_init__(self) -> None:
        _require((self.kind == "constant") == (self.value is not None), "kind",
                 "write the constant policy as {constant: <fill value>}; other policies take no value")


@dataclass(frozen=True)
class NumericColumns:
    """One entry of ``featurize.numeric``: columns that share a transform. A bare column name takes the defaults."""

    columns: tuple[str, ...] = ()
    transform: NumericTransform = "standard"
    missing: MissingConfig = field(default_factory=MissingConfig)
    indicator: bool = False  # add a float32 <column>_missing feature: 1 where the value was missing
    clip: tuple[float, ...] | None = None  # [lower, upper] quantiles of the training values
    bins: int = DEFAULT_PLE_BINS  # transform ple: the number of quantile bins

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"columns": [value]} if isinstance(value, str) else value

    def __post_init__(self) -> None:
        _require(bool(self.columns), "columns", "name at least one column")
        _require(self.clip is None or (len(self.clip) == 2 and 0.0 <= self.clip[0] < self.clip[1] <= 1.0), "clip",
                 f"expected two quantiles [lower, upper] with 0 <= lower < upper <= 1, got {self.clip!r}")
        _require(1 <= self.bins <= MAX_PLE_BINS, "bins", f"must be between 1 and {MAX_PLE_BINS}, got {self.bins!r}")

    def features(self) -> list[NumericFeature]:
        clip = (self.clip[0], self.clip[1]) if self.clip else None
        return [NumericFeature(c, self.transform, self.missing.kind, self.missing.value, self.indicator, clip,
                               self.bins) for c in self.columns]


@dataclass(frozen=True)
class CategoricalColumns:
    """One entry of ``featurize.categorical``: columns that share an encoding. A bare name takes the defaults."""

    columns: tuple[str, ...] = ()
    encoding: CategoricalEncoding = "index"
    min_count: int = 1  # values seen fewer times in training fold into the reserved id 0
    top_k: int | None = None  # keep at most this many values (required for onehot)
    missing: CategoricalMissing = "fold"  # nulls and empty strings: fold into id 0, or a value of their own

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"columns": [value]} if isinstance(value, str) else value

    def __post_init__(self) -> None:
        _require(bool(self.columns), "columns", "name at least one column")
        _positive(self, "min_count", "top_k")
        _require(self.encoding != "onehot" or (self.top_k is not None and self.top_k <= MAX_ONEHOT), "top_k",
                 f"onehot needs top_k of at most {MAX_ONEHOT}: the vector gets top_k + 1 slots (slot 0 for other "
                 "values); index more values for an embedding instead")

    def features(self) -> list[CategoricalFeature]:
        return [CategoricalFeature(c, self.encoding, self.min_count, self.top_k, self.missing) for c in self.columns]


@dataclass(frozen=True)
class DatetimeColumns:
    """One entry of ``featurize.datetime``: calendar parts of one date, from a ``column`` (timestamp, date or
    text) or assembled from integer ``fields`` ({year: ..., month: ..., day: ..., hour: ...}). ``parts`` is a list
    (each encoded per ``encoding``) or a mapping of part to encoding. Features are named ``<name>_<part>[_<encoding>]``;
    ``name`` defaults to the column."""

    column: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    parts: tuple[str, ...] | dict[str, str] = ()
    encoding: DatetimeEncoding = "cyclic"

    def __post_init__(self) -> None:
        _require((self.column is None) != (not self.fields), "column",
                 "name either a column or the fields {year: ..., month: ..., day: ..., hour: ...} to build the date from")
        _require(self.name is not None or self.column is not None, "name",
                 "name the features (for example name: departure) when the date is built from fields")
        _identifier(self, "name")
        _require(bool(self.parts), "parts", f"name at least one of {', '.join(DATETIME_PARTS)}")
        try:
            self.features()
        except FeatureError as err:
            raise _FieldError("parts", str(err)) from None

    def features(self) -> list[DatetimeFeature]:
        parts = self.parts if isinstance(self.parts, dict) else {
            p: "number" if p == "ordinal_day" else self.encoding for p in self.parts}
        return [DatetimeFeature(self.name or self.column, part, encoding, self.column, tuple(self.fields.items()))
                for part, encoding in parts.items()]


# The columns infer writes after the carried ones (key, passthrough, label, infer.keep): none of those may take
# these names. (``score`` is models.scoring.SCORE.)
PREDICTION_COLUMNS = ("score", "predicted_label", "model_name", "model_version", "feature_version", "input_version",
                      "run_id", "scored_at", "run_date")


@dataclass(frozen=True)
class FeaturizeConfig:
    """What the featurize stage reads, how each column is encoded and where it writes."""

    input: TableSource = field(default_factory=lambda: TableSource(table="raw_events"))
    output_table: str = "features"
    label: LabelConfig = field(default_factory=LabelConfig)
    key: str | None = "row_id"
    numeric: tuple[NumericColumns, ...] = ()
    categorical: tuple[CategoricalColumns, ...] = ()
    datetime: tuple[DatetimeColumns, ...] = ()
    passthrough: tuple[str, ...] = ()
    quantile_error: float = 0.001  # rank error of the approximate quantiles (median, quartiles, clip bounds)
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _identifier(self, "output_table")
        _require(0.0 < self.quantile_error < 0.5, "quantile_error", f"must be in (0, 0.5), got {self.quantile_error!r}")
        try:
            spec = self.feature_spec()
            spec.check_output_names(reserved=(SPLIT_COLUMN,))
        except FeatureError as err:
            raise _FieldError("numeric" if self.numeric else "categorical" if self.categorical else "datetime",
                              str(err)) from None
        for key, names in (("key", [self.key]), ("passthrough", self.passthrough), ("label", [self.label.column])):
            taken = [n for n in names if n in PREDICTION_COLUMNS]
            _require(not taken, key, f"column {taken[0] if taken else ''!r} takes the name of a column the "
                                     "predictions table has itself: rename it in the input")
        for key, names in (("key", [self.key]), ("passthrough", self.passthrough), ("label", [self.label.column]),
                           ("numeric", [f.column for f in spec.numeric]),
                           ("categorical", [f.column for f in spec.categorical]),
                           ("datetime", [c for f in spec.datetime for c in f.input_columns])):
            _plain_columns(key, names)

    def feature_spec(self) -> FeatureSpec:
        """The per-column feature spec these settings describe (the key column is always passed through)."""
        passthrough = tuple(dict.fromkeys(((self.key,) if self.key else ()) + self.passthrough))
        return FeatureSpec(
            label=LabelSpec(self.label.column, self.label.kind, self.label.positive, self.label.negative),
            numeric=tuple(f for entry in self.numeric for f in entry.features()),
            categorical=tuple(f for entry in self.categorical for f in entry.features()),
            passthrough=passthrough,
            datetime=tuple(f for entry in self.datetime for f in entry.features()),
        )


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the validation metric ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: Literal["val_auc", "val_loss", "val_accuracy"] = "val_auc"
    patience: int = 3
    min_delta: float = 0.0

    @property
    def mode(self) -> str:
        return "min" if self.monitor == "val_loss" else "max"

    def __post_init__(self) -> None:
        _positive(self, "patience")
        _require(self.min_delta >= 0, "min_delta", f"must be >= 0, got {self.min_delta!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The model and the distributed training run."""

    model_name: str = "higgs_mlp"
    model: Literal["mlp", "autoencoder"] = "mlp"
    num_proc: int | Literal["auto"] = "auto"  # Horovod workers; auto: the Spark application's task slots
    # how the workers meet: Gloo (no MPI needed), or MPI (Open MPI's mpirun through Spark's tasks; on one node the
    # ranks exchange gradients through shared memory: 2 workers on 2 cores train ~1.5x faster, see docs/training.md)
    controller: Literal["gloo", "mpi"] = "gloo"
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 0.001  # per worker: Horovod scales it by num_proc, after warmup_epochs of warm-up
    warmup_epochs: int = 1
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9  # sgd only
    loss: Literal["bce", "mse"] = "bce"  # the autoencoder always minimises its reconstruction error
    hidden_units: tuple[int, ...] = (128, 64, 32)
    activation: Literal["relu", "tanh", "elu", "leaky_relu"] = "relu"
    dropout: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    batch_norm: bool = False
    embedding_dim: int | Literal["auto"] = 8  # auto: min(50, round(1.6 * cardinality ** 0.56)) per column
    sample_weight: str | None = None  # a passthrough column of the feature table weighting the loss and metrics
    class_weight: Literal["balanced"] | None = None  # balanced: each class weighs as much in the training loss
    early_stopping: EarlyStoppingConfig | None = field(default_factory=EarlyStoppingConfig)
    use_gpu: bool = False  # one GPU per rank (hvd.local_rank()); needs the GPU install (docs/gpu.md)
    pin_cpus: bool = True  # workers on one node each pinned to their own share of its CPUs
    seed: int = 1
    start_timeout_s: int = 120

    def __post_init__(self) -> None:
        _identifier(self, "model_name")
        _require(self.num_proc == "auto" or self.num_proc > 0, "num_proc",
                 f"must be a positive integer or auto, got {self.num_proc!r}")
        _positive(self, "epochs", "batch_size", "learning_rate", "start_timeout_s")
        _require(all(units > 0 for units in self.hidden_units), "hidden_units", "every layer width must be > 0")
        _require(len(self.hidden_units) > 0, "hidden_units", "give at least one layer width")
        _require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout!r}")
        _require(self.embedding_dim == "auto" or self.embedding_dim > 0, "embedding_dim",
                 f"must be a positive integer or auto, got {self.embedding_dim!r}")
        _require(0 <= self.l1 < math.inf and 0 <= self.l2 < math.inf, "l1",
                 f"L1 and L2 factors must be finite numbers >= 0, got {self.l1!r} and {self.l2!r}")
        _require(self.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {self.warmup_epochs!r}")
        _require(0.0 <= self.momentum < 1.0, "momentum", f"must be in [0, 1), got {self.momentum!r}")


# train.* keys that say how a run trains, not what: a run id may resume (and a stage be reused) with other values
TRAIN_EXECUTION_KEYS = ("start_timeout_s", "pin_cpus", "controller")

# train.* keys a scan may vary: the model and the optimisation, not where the run goes or how it is launched
TUNABLE = ("epochs", "batch_size", "learning_rate", "warmup_epochs", "optimizer", "momentum", "hidden_units",
           "activation", "dropout", "l1", "l2", "batch_norm", "embedding_dim", "seed")


@dataclass(frozen=True)
class TuneConfig:
    """A hyperparameter scan (``dlpipe tune``): every trial trains one config of ``space`` on one worker, as one
    Spark task, trials in parallel across the task slots.

    ``space`` maps ``train.*`` keys (see ``TUNABLE``) to a list of values (grid and random) or, for random search
    over a number, to a range ``{low: L, high: H, log: true|false}``. Grid search runs every combination; random
    search draws ``trials`` configs (seeded)."""

    strategy: Literal["grid", "random"] = "random"
    trials: int = 8  # random search: how many configs; grid search: at most this many combinations
    space: dict[str, Any] = field(default_factory=lambda: {"learning_rate": {"low": 0.0003, "high": 0.01, "log": True},
                                                           "hidden_units": [[64, 32], [128, 64, 32]]})
    metric: Literal["val_auc", "val_loss", "val_accuracy"] = "val_auc"
    epochs: int | None = None  # each trial's epochs; null: train.epochs
    seed: int = 1
    output_table: str = "tune_trials"

    @property
    def mode(self) -> str:
        return "min" if self.metric == "val_loss" else "max"

    def __post_init__(self) -> None:
        _identifier(self, "output_table")
        _positive(self, "trials", "epochs")
        _require(bool(self.space), "space", "name at least one train.* key to vary")
        hints = typing.get_type_hints(TrainConfig)
        for key, values in self.space.items():
            where = f"space.{key}"
            _require(key in TUNABLE, where, f"is not a train key a scan can vary (tunable: {', '.join(TUNABLE)})")
            if isinstance(values, dict):
                _require(self.strategy == "random", where, "a range {low, high} needs strategy random; give a list for grid")
                _require(hints[key] in (int, float), where, f"a range needs a numeric key; give {key} a list of values")
                unknown = sorted(set(values) - {"low", "high", "log"})
                _require(not unknown and {"low", "high"} <= set(values), where,
                         f"a range is {{low: L, high: H, log: true|false}}, got {values!r}")
                for bound in ("low", "high"):
                    self.candidate(key, values[bound], f"{where}.{bound}")
                _require(float(values["low"]) < float(values["high"]), where, "low must be below high")
                _require(not values.get("log") or float(values["low"]) > 0, where, "a log range needs low > 0")
            else:
                _require(isinstance(values, list) and len(values) > 0, where,
                         f"give a non-empty list of values (or a range for random search), got {values!r}")
                for i, value in enumerate(values):
                    self.candidate(key, value, f"{where}[{i}]")
        if self.strategy == "grid":
            combinations = math.prod(len(values) for values in self.space.values())
            _require(combinations <= self.trials, "trials",
                     f"the grid of tune.space has {combinations} combinations, more than tune.trials={self.trials}: "
                     "raise tune.trials or use fewer values")

    @staticmethod
    def candidate(key: str, value: Any, where: str) -> Any:
        """``value`` as train.``key`` takes it, checked like the train section checks it."""
        hint = typing.get_type_hints(TrainConfig)[key]
        try:
            from dlpipe.pipelines.config.loader import coerce  # the loader builds these classes

            value = coerce(hint, value, {}, f"train.{key}")
            dataclasses.replace(TrainConfig(), **{key: value})
        except ConfigError as err:
            raise _FieldError(where, str(err).split(": ", 2)[-1]) from None
        except _FieldError as err:
            raise _FieldError(where, err.message) from None
        return value


DRIFT_STATISTICS = ("psi", "wasserstein", "jensen_shannon", "unseen_share", "missing_share")


@dataclass(frozen=True)
class DriftConfig:
    """Drift of the scored input from the training split, measured while infer scores (docs/drift.md): a
    threshold per statistic, and per feature where ``features`` sets one (``{lepton_pt: {psi: 0.5}}``)."""

    enabled: bool = True
    fail: bool = False            # an alert fails the stage, after the predictions are written
    table: str = "drift"          # the Delta table of every run's statistics
    psi: float = 0.2              # numeric: population stability index over the training bins
    wasserstein: float = 0.1      # numeric: Wasserstein distance / training standard deviation
    jensen_shannon: float = 0.1   # categorical: Jensen-Shannon distance of the value shares
    unseen_share: float = 0.1     # categorical: rise in the share of values outside the vocabulary
    missing_share: float = 0.1    # any feature: change in the share of missing values
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    sample_rows: int = 20_000     # the distributions are compared on a uniform sample of about this many rows

    def __post_init__(self) -> None:
        _identifier(self, "table")
        _positive(self, "sample_rows")
        for key in DRIFT_STATISTICS:
            _require(getattr(self, key) > 0, key, f"must be greater than 0, got {getattr(self, key)!r}")
        for feature, thresholds in self.features.items():
            for key, value in thresholds.items():
                _require(key in DRIFT_STATISTICS, "features",
                         f"{feature}: unknown statistic {key!r} (choose from {', '.join(DRIFT_STATISTICS)})")
                _require(value > 0, "features", f"{feature}.{key}: must be greater than 0, got {value!r}")

    def threshold(self, feature: str, statistic: str) -> float:
        return self.features.get(feature, {}).get(statistic, getattr(self, statistic))


@dataclass(frozen=True)
class InferConfig:
    """What the infer stage scores, with which model, and where the predictions table goes."""

    input: TableSource = field(default_factory=lambda: TableSource(table="raw_events"))
    output_table: str = "predictions"
    model_version: str | int | None = None  # a version (v3, or 3), an alias (production); null: the latest
    feature_version: str | None = None  # null: the artifact the model was trained on (any other is refused)
    threshold: float | Literal["auto"] = 0.5  # auto: the one training picked by threshold_rule
    threshold_rule: Literal["f1", "rate"] = "f1"  # auto by best F1, or by the training split's positive rate
    batch_size: int = 10000             # rows per Arrow batch, scored in one model call
    partition_by: tuple[Literal["run_date", "model_name", "model_version"], ...] = ("run_date",)
    on_empty: Literal["skip", "fail"] = "skip"  # an empty input: write nothing and say so, or fail
    keep: tuple[str, ...] = ()          # input columns written beside the key, label and score (e.g. [carrier])
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self) -> None:
        _identifier(self, "output_table")
        _positive(self, "batch_size")
        _require(self.threshold == "auto" or 0.0 < self.threshold < 1.0, "threshold",
                 f"must be in (0, 1) or auto, got {self.threshold!r}")
        if isinstance(self.model_version, int) and self.model_version > 0:
            object.__setattr__(self, "model_version", f"v{self.model_version}")
        if self.model_version == "latest":
            object.__setattr__(self, "model_version", None)
        version = self.model_version
        _require(version is None or (isinstance(version, str) and bool(re.match(r"^(v[1-9][0-9]*|[a-z][a-z0-9_-]*)$",
                                                                                   version))),
                 "model_version", "must be a version such as v3 (or 3), an alias such as production, or latest, got "
                 f"{version!r}")
        _require(self.feature_version is None or bool(re.match(r"^v[1-9][0-9]*$", self.feature_version)),
                 "feature_version", f"must be a version such as v1, got {self.feature_version!r}")
        _require(len(set(self.partition_by)) == len(self.partition_by), "partition_by",
                 f"names a column twice: {list(self.partition_by)}")
        _plain_columns("keep", self.keep)


@dataclass(frozen=True)
class EvaluateConfig:
    """Which predictions are scored against labels, and where the metrics go."""

    split: Literal["train", "validation", "test"] = "validation"
    metrics_table: str = "metrics"
    reference_column: str | None = None  # e.g. the generator's true_prob: its AUC is the best achievable
    # Physics samples: each row's number of real events. With it, the AMS (approximate median significance) of
    # the best score cut, its threshold and the AMS against the threshold.
    event_weight: str | None = None
    # Metrics per slice: per named column, or list of columns, each value (combination) of it, the max_slices
    # largest by rows; a slice whose AUC is more than slice_auc_margin below the overall AUC is flagged.
    slices: tuple[str | tuple[str, ...], ...] = ()
    max_slices: int = 50
    slice_auc_margin: float = 0.05

    def __post_init__(self) -> None:
        _identifier(self, "metrics_table")
        for spec in self.slices:
            _plain_columns("slices", (spec,) if isinstance(spec, str) else spec)
            _require(bool(spec), "slices", "an empty list of columns slices nothing")
        _require(len(set(self.slice_columns)) == len(self.slice_columns), "slices", "names a slice twice")
        _positive(self, "max_slices")
        _require(0.0 <= self.slice_auc_margin <= 1.0, "slice_auc_margin",
                 f"must be in [0, 1], got {self.slice_auc_margin!r}")

    @property
    def slice_columns(self) -> tuple[tuple[str, ...], ...]:
        """Each slice as its tuple of columns (a bare name is a one-column slice)."""
        return tuple((spec,) if isinstance(spec, str) else tuple(spec) for spec in self.slices)


@dataclass(frozen=True)
class SqlServerConfig:
    """Where ``dlpipe serve-sql`` serves JDBC (the Spark Thrift server): loopback only by default."""

    host: str = "127.0.0.1"
    port: int = 10000
    password_file: str | None = None  # users and password hashes (pipelines.sql_auth); required off loopback
    # Each statement of a client: stopped after query_timeout seconds; a query whose result has more rows, or more
    # bytes as text, fails. 0: no limit.
    query_timeout: int = 600
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 * 1024 * 1024
    # Failed logins: after login_attempts in a row for one user (or four times as many from one client address),
    # every login of that user (or from that address) is refused for lockout_seconds.
    login_attempts: int = 5
    lockout_seconds: int = 60
    run_as: str = "nobody"  # the user whose process serves, when serve-sql is started as root

    def __post_init__(self) -> None:
        _require(1 <= self.port <= 65535, "port", f"must be a TCP port (1-65535), got {self.port!r}")
        _require(bool(self.host), "host", "must not be empty")
        for key in ("query_timeout", "max_result_rows", "max_result_bytes", "lockout_seconds"):
            _require(getattr(self, key) >= 0, key, f"must be 0 (no limit) or more, got {getattr(self, key)!r}")
        _require(self.login_attempts >= 1, "login_attempts", f"must be 1 or more, got {self.login_attempts!r}")
        _require(bool(re.match(r"^[a-z_][a-z0-9_-]*$", self.run_as)), "run_as",
                 f"must be a user name, got {self.run_as!r}")


@dataclass(frozen=True)
class MetastoreConfig:
    """A shared Hive metastore in PostgreSQL, for many processes at once (null: embedded Derby, one at a time). The
    password is read from the environment variable ``password_env``, never from a file."""

    url: str = ""  # jdbc:postgresql://host:port/database
    user: str = "dlpipe"
    password_env: str = "DLPIPE_METASTORE_PASSWORD"

    def __post_init__(self) -> None:
        _require(bool(re.match(r"^jdbc:postgresql://[^/?#]+/[^/?#]+([?].*)?$", self.url)), "url",
                 f"must be a PostgreSQL JDBC URL such as jdbc:postgresql://127.0.0.1:5433/metastore, got {self.url!r}")
        _require(not re.search(r"[?&]password=", self.url, re.IGNORECASE), "url",
                 "must not hold the password: put it in the environment variable that password_env names")
        _require(bool(self.user), "user", "must not be empty")
        _require(bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.password_env)), "password_env",
                 f"must be the name of an environment variable, got {self.password_env!r}")


StageName = Literal["generate", "featurize", "train", "infer", "evaluate"]
STAGES: tuple[str, ...] = typing.get_args(StageName)  # the pipeline's stages, in the order they run


@dataclass(frozen=True)
class Config:
    """All settings of one pipeline. ``data_dir`` holds the warehouse, metastore, artifacts and models."""

    data_dir: str = "var"
    database: str = "dlpipe"
    namespace: str | None = None  # a team's prefix for its database, model store and artifacts (see database_name)
    runs_table: str = "runs"      # the Delta table where every stage of every run is recorded (pipelines.tracking)
    model_aliases_table: str = "model_aliases"  # every move of a model alias (pipelines.registry)
    spark: SparkConfig = field(default_factory=SparkConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    sql_server: SqlServerConfig = field(default_factory=SqlServerConfig)
    metastore: MetastoreConfig | None = None  # null: the embedded Derby metastore under data_dir
    stages: tuple[StageName, ...] = (
        "featurize", "train", "infer", "evaluate",
    )
    source_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _identifier(self, "database", "namespace", "runs_table", "model_aliases_table")
        for key in ("database", "namespace"):  # "__" separates them in database_name, so names never collide
            value = getattr(self, key)
            _require(value is None or "__" not in value, key,
                     f"must not contain a double underscore (it separates namespace and database), got {value!r}")
        _require(bool(self.data_dir), "data_dir", "must not be empty")

    @property
    def data_path(self) -> Path:
        """The data folder: warehouse, metastore and scratch, shared by every namespace."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def database_name(self) -> str:
        """The metastore database of this pipeline's tables: ``<namespace>__<database>`` with a namespace. Neither
        part may contain ``__``, so two (namespace, database) pairs never name the same database, and a namespaced
        database never that of a config without a namespace."""
        return f"{self.namespace}__{self.database}" if self.namespace else self.database

    @property
    def outputs_path(self) -> Path:
        """Where feature artifacts, models and evaluation plots go: the data folder, or with a namespace its own
        ``namespaces/<namespace>/`` folder in it, so two teams on one metastore and warehouse never share them."""
        return self.data_path / "namespaces" / self.namespace if self.namespace else self.data_path

    def check_stage(self, stage: str) -> None:
        """Checks that need to know which stage runs (a ``sql`` call needs no feature columns)."""
        if stage in ("featurize", "run") and not (self.featurize.numeric or self.featurize.categorical
                                                  or self.featurize.datetime):
            where = self.source_files[-1] if self.source_files else DEFAULTS
            raise ConfigError(f"{where}: featurize.numeric: name at least one numeric or categorical feature column")

    def qualified(self, table: str) -> str:
        """``database.table`` for a table name from this config (all parts are validated identifiers)."""
        return f"{self.database_name}.{table}"
