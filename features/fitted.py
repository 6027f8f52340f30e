"""The fitted state of a feature spec: every statistic the transform uses, in a form that round-trips through JSON
exactly (floats are written with ``repr``), so features applied from a saved artifact are byte-identical to
features applied right after fitting."""
from __future__ import annotations

from dataclasses import dataclass, field

from dlpipe.features.profile import ProfileBins, TrainingProfile
from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.features.spec import FeatureSpec

# The stated rank error of the approximate quantiles (Spark's percentile_approx with accuracy 1 / error).
DEFAULT_QUANTILE_ERROR = 0.001


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class NumericStats:
    """Training statistics of one numeric column, after clipping.

    ``mean``/``std``/``min``/``max``/``quantiles`` describe the present (non-missing) values; ``log_mean`` and
    ``log_std`` those of log1p(value) for ``log`` columns. ``fill``, ``center`` and ``scale`` are what the transform
    applies: a missing value becomes ``fill`` (in the space before scaling), then ``(x - center) / scale``.
    """

    count: int
    missing: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    quantiles: dict[str, float]
    clip_bounds: tuple[float, float] | None
    log_mean: float | None
    log_std: float | None
    fill: float
    center: float
    scale: float
    edges: tuple[float, ...] | None = None  # a ple column's bin edges

    def to_json(self) -> dict:
        out = {
            "count": self.count, "missing": self.missing, "min": self.min, "max": self.max,
            "mean": self.mean, "std": self.std, "quantiles": dict(self.quantiles),
            "clip_bounds": list(self.clip_bounds) if self.clip_bounds else None,
            "log_mean": self.log_mean, "log_std": self.log_std,
            "fill": self.fill, "center": self.center, "scale": self.scale,
        }
        if self.edges is not None:
            out["edges"] = list(self.edges)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "NumericStats":
        bounds = data["clip_bounds"]
        return cls(
            count=int(data["count"]), missing=int(data["missing"]),
            min=_opt_float(data["min"]), max=_opt_float(data["max"]),
            mean=_opt_float(data["mean"]), std=_opt_float(data["std"]),
            quantiles={k: float(v) for k, v in data["quantiles"].items()},
            clip_bounds=(float(bounds[0]), float(bounds[1])) if bounds else None,
            log_mean=_opt_float(data["log_mean"]), log_std=_opt_float(data["log_std"]),
            fill=float(data["fill"]), center=float(data["center"]), scale=float(data["scale"]),
            edges=tuple(float(e) for e in data["edges"]) if data.get("edges") is not None else None,
        )


@dataclass(frozen=True)
class Vocabulary:
    """The kept values of one categorical column, most frequent first: value i gets id i + 1 (id 0 is "other").
    A value of None is the missing category (nulls and empty strings) of a ``missing: value`` column."""

    values: tuple[str | None, ...]
    counts: tuple[int, ...]
    distinct: int  # distinct values in the training split (missing counted as one when it is a value)
    folded_rows: int  # training rows that map to id 0

    @property
    def size(self) -> int:
        """Number of ids, the reserved id 0 included."""
        return len(self.values) + 1

    def to_json(self) -> dict:
        return {"distinct": self.distinct, "kept": len(self.values), "folded_rows": self.folded_rows,
                "values": list(self.values), "counts": list(self.counts)}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        return cls(tuple(data["values"]), tuple(int(n) for n in data["counts"]), int(data["distinct"]),
                   int(data["folded_rows"]))


@dataclass(frozen=True)
class FittedFeatures:
    """Everything ``apply_features`` needs, and nothing that depends on where it is stored."""

    spec: FeatureSpec
    numeric: dict[str, NumericStats]
    vocabularies: dict[str, Vocabulary]
    input_schema: dict[str, str]
    train_rows: int
    quantile_error: float = DEFAULT_QUANTILE_ERROR
    datetime: dict[str, NumericStats] = field(default_factory=dict)  # by output column: number-encoded parts
    training_profile: TrainingProfile | None = None  # for drift; artifacts fitted before it have none

    @property
    def profile_bins(self) -> ProfileBins | None:
        """The bins a scored input's drift profile is counted over (None: the artifact has no training profile)."""
        return self.training_profile.bins(self.vocabularies) if self.training_profile else None

    @property
    def schema(self) -> FeatureSchema:
        features = []
        for f in self.spec.numeric:
            edges = self.numeric[f.column].edges
            shape = (len(edges) - 1,) if f.transform == "ple" else ()
            features.append(FeatureColumn(f.output_column, "dense", "float32", shape))
        features += [FeatureColumn(f.indicator_column, "dense", "float32") for f in self.spec.numeric if f.indicator]
        for f in self.spec.categorical:
            size = self.vocabularies[f.column].size
            if f.encoding == "onehot":
                features.append(FeatureColumn(f.output_column, "dense", "float32", (size,)))
            else:
                features.append(FeatureColumn(f.output_column, "index", "int32", (), size))
        for f in self.spec.datetime:
            if f.encoding == "index":
                features.append(FeatureColumn(f.output_column, "index", "int32", (), f.ids))
            else:
                shape = (2,) if f.encoding == "cyclic" else (f.ids,) if f.encoding == "onehot" else ()
                features.append(FeatureColumn(f.output_column, "dense", "float32", shape))
        return FeatureSchema(self.spec.label.column, tuple(features), self.spec.passthrough)

    def to_json(self) -> dict:
        return {
            "spec": self.spec.to_json(),
            "train_rows": self.train_rows,
            "quantile_error": self.quantile_error,
            "input_schema": self.input_schema,
            "numeric": {c: s.to_json() for c, s in self.numeric.items()},
            "categorical": {c: v.to_json() for c, v in self.vocabularies.items()},
            "datetime": {c: s.to_json() for c, s in self.datetime.items()},
            "feature_schema": self.schema.to_json(),
            **({"training_profile": self.training_profile.to_json()} if self.training_profile else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> "FittedFeatures":
        return cls(
            spec=FeatureSpec.from_json(data["spec"]),
            numeric={c: NumericStats.from_json(s) for c, s in data["numeric"].items()},
            vocabularies={c: Vocabulary.from_json(v) for c, v in data["categorical"].items()},
            input_schema=dict(data["input_schema"]),
            train_rows=int(data["train_rows"]),
            quantile_error=float(data["quantile_error"]),
            datetime={c: NumericStats.from_json(s) for c, s in data.get("datetime", {}).items()},
            training_profile=TrainingProfile.from_json(data["training_profile"]) if "training_profile" in data else None,
        )
