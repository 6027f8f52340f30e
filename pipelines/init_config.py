"""``dlpipe init``: profile a table in Spark and write a starting pipeline config that runs as is.

One aggregation pass gives, per column, the non-null count and an approximate distinct count, and for numbers the
min, max and quartiles, for text the share that parses as a timestamp; one ``groupBy`` counts the label's classes.
From those the config is written with the reason for every choice in a comment beside it:

- a timestamp or date column, or text that parses as one: calendar parts (hour, day of week, day of year, cyclic);
- an integer column with few values (``SMALL_DOMAIN``): a number and a category, so the network gets both the
  order and a free effect per value (months, hours, weekdays);
- any other number: z-scored; with a heavy tail (``HEAVY_TAIL``) log1p first when it is never negative, else
  clipped to its 0.1% and 99.9% training quantiles; a missing indicator when values are missing. (The
  piecewise-linear encoding, ``ple``, did worse on the flights benchmark: docs/benchmarks.md.)
- text and booleans: an embedded category; values rarer than ``rare_count(rows)`` fold into "other";
- a column whose values are almost all distinct (an id), constant or empty: left out, and the comment says so.

The written file is loaded and validated before it is saved, so it never holds a config ``dlpipe run`` refuses.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dlpipe.pipelines.config import Config, ConfigError, TableSource, load_config
from dlpipe.pipelines.errors import PipelineError
from dlpipe.pipelines.tables import read_source

SMALL_DOMAIN = 64       # an integer column with 3..64 values is also a category
ID_SHARE = 0.5          # a text column with distinct values on more than half its rows is an id, not a category
TIMESTAMP_SHARE = 0.95  # text that parses as a timestamp on this share of its values is a date
HEAVY_TAIL = 20.0       # a value more than 20 interquartile ranges beyond the quartiles: a heavy tail
UNBALANCED = 0.35       # a positive rate outside [0.35, 0.65]: score at the threshold training picks (auto)
DAY_EMBEDDING_ROWS = 10_000  # from this many rows (~27 a day of the year), the day of the year is embedded
EPOCHS = 20             # the most epochs; early stopping (base.yaml: val_auc, patience 3) usually ends sooner


def rare_count(rows: int) -> int:
    """Training rows a category value needs to get its own embedding: 1 per 10,000 rows, at least 5 and at most 50.
    Rarer values share the "other" id; an embedding trained on a handful of rows only memorises them."""
    return max(5, min(50, rows // 10_000))


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    dtype: T.DataType
    present: int
    distinct: int
    minimum: float | None = None
    maximum: float | None = None
    quartiles: tuple[float, float, float] | None = None
    timestamp_share: float = 0.0  # text: the share of values that parse as a timestamp
    has_time: bool = False  # timestamps (and text parsed as one): some value is not at midnight

    @property
    def kind(self) -> str:
        if isinstance(self.dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
            return "date"
        if isinstance(self.dtype, T.BooleanType):
            return "boolean"
        if isinstance(self.dtype, T.IntegralType):
            return "integer"
        if isinstance(self.dtype, T.NumericType):
            return "number"
        if isinstance(self.dtype, T.StringType):
            return "text"
        return "other"


@dataclass(frozen=True)
class TableProfile:
    rows: int
    columns: tuple[ColumnProfile, ...]
    label_counts: dict[str | None, int]  # rows per label value (as text; None: no label)

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)


def profile(df: DataFrame, label: str) -> TableProfile:
    """Counts, distinct values, ranges and timestamp-likeness of every column, in one pass; the label's classes."""
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, field in enumerate(df.schema.fields):
        column = F.col(f"`{field.name}`")
        aggs += [F.count(column).alias(f"n{i}"), F.approx_count_distinct(column, 0.02).alias(f"d{i}")]
        if isinstance(field.dataType, T.NumericType):
            value = column.cast("double")
            finite = F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)
            aggs += [F.min(finite).alias(f"lo{i}"), F.max(finite).alias(f"hi{i}"),
                     F.percentile_approx(finite, [0.25, 0.5, 0.75], 1000).alias(f"q{i}")]
        if isinstance(field.dataType, (T.StringType, T.TimestampType, T.TimestampNTZType)):
            ts = F.try_to_timestamp(column) if isinstance(field.dataType, T.StringType) else column
            aggs += [F.count(ts).alias(f"ts{i}"),
                     F.count(F.when((F.hour(ts) > 0) | (F.minute(ts) > 0), 1)).alias(f"tod{i}")]
    row = df.agg(*aggs).first()
    columns = []
    for i, field in enumerate(df.schema.fields):
        present = int(row[f"n{i}"])
        numeric = isinstance(field.dataType, T.NumericType)
        quartiles = row[f"q{i}"] if numeric else None
        columns.append(ColumnProfile(
            field.name, field.dataType, present, int(row[f"d{i}"]),
            minimum=row[f"lo{i}"] if numeric else None, maximum=row[f"hi{i}"] if numeric else None,
            quartiles=tuple(quartiles) if quartiles else None,
            timestamp_share=(row[f"ts{i}"] / present if present else 0.0)
            if isinstance(field.dataType, T.StringType) else 0.0,
            has_time=bool(row[f"tod{i}"]) if f"tod{i}" in row else False,
        ))
    counts = {None if r[0] is None else str(r[0]).lower() if isinstance(r[0], bool) else str(r[0]): int(r[1])
              for r in df.groupBy(F.col(f"`{label}`")).count().limit(101).collect()}
    return TableProfile(int(row["rows"]), tuple(columns), counts)


# ------------------------------------------------------------------------------------------------ choices


@dataclass(frozen=True)
class Choice:
    """What the config does with one column, and why (the comment written beside it)."""

    column: str
    use: str  # numeric, numeric+categorical, categorical, datetime, skip
    why: str
    indicator: bool = False
    min_count: int = 1
    transform: str = "standard"  # numeric: the settings beside the column, e.g. "log" or "standard, clip: [..]"


def choose(p: ColumnProfile, rows: int) -> Choice:
    missing = 1.0 - p.present / rows if rows else 0.0
    holes = f"; {missing:.1%} missing" if p.present < rows else ""
    if p.present == 0:
        return Choice(p.name, "skip", "no values")
    if p.distinct <= 1:
        return Choice(p.name, "skip", "one value: nothing to learn from")
    if p.kind == "date" or (p.kind == "text" and p.timestamp_share >= TIMESTAMP_SHARE):
        what = "a date" if isinstance(p.dtype, T.DateType) else "a timestamp" if p.kind == "date" else \
            f"text that parses as a timestamp ({p.timestamp_share:.0%})"
        hours = "" if p.has_time or isinstance(p.dtype, T.DateType) else ", always at midnight: no hour"
        return Choice(p.name, "datetime", f"{what}: calendar parts{hours}{holes}")
    if p.kind == "text" or p.kind == "boolean":
        if p.kind == "text" and p.distinct > ID_SHARE * p.present:
            return Choice(p.name, "skip", f"looks like an id: ~{p.distinct:,} distinct values in {p.present:,} rows")
        count = rare_count(rows)
        return Choice(p.name, "categorical", f"{p.kind}, ~{p.distinct:,} values; values seen fewer than {count} "
                                             f"times share one id{holes}", min_count=count)
    if p.kind == "integer" and p.distinct <= SMALL_DOMAIN and p.distinct > 2:
        return Choice(p.name, "numeric+categorical",
                      f"integer with ~{p.distinct} values: a number and a category{holes}",
                      indicator=p.present < rows)
    if p.kind in ("integer", "number"):
        lo, hi = p.minimum, p.maximum
        span = "" if lo is None else f" from {lo:g} to {hi:g}"
        transform, tail = "standard", ""
        if p.quartiles and lo is not None:
            q1, _, q3 = p.quartiles
            spread = max(q3 - q1, 1e-12)
            if hi - q3 > HEAVY_TAIL * spread or q1 - lo > HEAVY_TAIL * spread:
                if lo >= 0:
                    transform, tail = "log", f"; heavy tail (quartiles {q1:g}, {q3:g}): log1p, then z-scored"
                else:
                    transform = "standard, clip: [0.001, 0.999]"
                    tail = f"; heavy tail (quartiles {q1:g}, {q3:g}): clipped to the 0.1% and 99.9% quantiles"
        return Choice(p.name, "numeric", f"{p.kind}{span}, ~{p.distinct:,} values{tail}{holes}",
                      indicator=p.present < rows, transform=transform)
    return Choice(p.name, "skip", f"type {p.dtype.simpleString()} is not a feature type")


def label_line(p: TableProfile, label: str) -> tuple[str, str, float]:
    """(the YAML value of featurize.label, its comment, the positive rate), or a one-line error."""
    column = p.column(label)
    counts = {k: n for k, n in p.label_counts.items() if k is not None}
    if len(counts) != 2:
        shown = ", ".join(sorted(counts, key=lambda v: (len(v), v))[:5])
        raise PipelineError(f"label column {label!r} has {len(counts)}{'+' if len(counts) > 100 else ''} classes "
                            f"({shown}{', ...' if len(counts) > 5 else ''}); dlpipe trains binary classifiers: "
                            "derive a 0/1 column first")
    total = sum(counts.values())
    nulls = p.label_counts.get(None, 0)
    dropped = f"; {nulls:,} rows without a label are refused by featurize: filter them out" if nulls else ""
    if column.kind in ("integer", "number", "boolean"):
        values = sorted(counts, key=lambda v: float(v == "true") if column.kind == "boolean" else float(v))
        if column.kind != "boolean" and [float(v) for v in values] != [0.0, 1.0]:
            raise PipelineError(f"label column {label!r} holds {values[0]} and {values[1]}, not 0 and 1: derive a "
                                "0/1 column first")
        rate = counts[values[1]] / total
        return label, f"{rate:.1%} positive ({counts[values[1]]:,} of {total:,}){dropped}", rate
    positive = min(counts, key=lambda v: (counts[v], v))  # the rarer class is the one to find
    negative = next(v for v in counts if v != positive)
    rate = counts[positive] / total
    value = f"{{column: {label}, positive: {_quote(positive)}, negative: {_quote(negative)}}}"
    return value, f"the rarer class is positive: {rate:.1%} ({counts[positive]:,} of {total:,}){dropped}", rate


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .-]*", text) and text.lower() not in (
        "true", "false", "yes", "no", "null", "on", "off") else '"' + text.replace('"', '\\"') + '"'


def find_key(p: TableProfile, label: str) -> ColumnProfile | None:
    """A column that names each row: no nulls, (approximately) one distinct value per row, an integer or text."""
    for c in p.columns:
        if c.name != label and c.kind in ("integer", "text") and c.present == p.rows and c.distinct >= 0.98 * p.rows:
            return c
    return None


# ------------------------------------------------------------------------------------------------ writing


def source_of(spark: SparkSession, cfg: Config, text: str) -> TableSource:
    """``--input``: a metastore table name, or a path to Delta files (a folder with ``_delta_log``) or Parquet."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) and not Path(text).exists():
        return TableSource(table=text)
    path = Path(text).expanduser()
    if "://" not in text and not path.exists():
        raise PipelineError(f"--input {text}: no such table in {cfg.database_name} and no such path")
    delta = (path / "_delta_log").is_dir()
    return TableSource(path=str(path.resolve()) if "://" not in text else text, format="delta" if delta else "parquet")


def name_of(output: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", output.stem).strip("_") or "pipeline"
    return name if re.match(r"[A-Za-z_]", name) else f"p_{name}"


def _source_yaml(source: TableSource) -> str:
    return f"{{table: {source.table}}}" if source.table else f"{{path: {source.path}, format: {source.format}}}"


def render(p: TableProfile, source: TableSource, described: str, label: str, key: str | None, key_why: str,
           name: str, output: Path) -> str:
    label_value, label_why, rate = label_line(p, label)
    choices = [choose(c, p.rows) for c in p.columns if c.name not in (label, key)]
    by_use = {use: [c for c in choices if c.use == use] for use in
              ("numeric", "numeric+categorical", "categorical", "datetime", "skip")}
    lines = [
        f"# Written by `dlpipe init` on {dt.date.today().isoformat()} from {described}: {p.rows:,} rows, "
        f"{len(p.columns)} columns.",
        "# Every choice has its reason beside it; edit freely (docs/configuration.md lists every key).",
        f"# Run it: dlpipe run --config {output}",
        "stages: [featurize, train, infer, evaluate]",
        "",
        "featurize:",
        f"  input: {_source_yaml(source)}",
        f"  output_table: {name}_features",
        f"  label: {label_value}   # {label_why}",
        f"  key: {key if key else 'null'}   # {key_why}",
    ]
    numeric = by_use["numeric"] + by_use["numeric+categorical"]
    if numeric:
        lines.append("  numeric:   # z-scored with the training mean and deviation; missing values -> the mean")
        for c in numeric:
            extra = ", indicator: true" if c.indicator else ""
            lines.append(f"    - {{columns: [{c.column}], transform: {c.transform}{extra}}}   # {c.why}")
    categorical = by_use["categorical"] + by_use["numeric+categorical"]
    if categorical:
        lines.append("  categorical:   # an embedding of 8 numbers per column (train.embedding_dim)")
        for c in categorical:
            count = f", min_count: {c.min_count}" if c.min_count > 1 else ""
            why = c.why if c.use == "categorical" else "the same integer as a category: a free effect per value"
            lines.append(f"    - {{columns: [{c.column}]{count}}}   # {why}")
    if by_use["datetime"]:
        days = "index" if p.rows >= DAY_EMBEDDING_ROWS else "cyclic"
        lines.append(f"  datetime:   # hour: sine and cosine of the phase (23:00 sits next to 0:00); weekday and day of "
                     f"the year: {'an embedding each (a day of storms gets its own effect)' if days == 'index' else 'weekday an embedding, day of the year cyclic (too few rows to embed 366 days)'}")
        for c in by_use["datetime"]:
            hour = "hour: cyclic, " if p.column(c.column).has_time else ""
            lines.append(f"    - {{column: {c.column}, parts: {{{hour}day_of_week: index, day_of_year: {days}}}}}   "
                         f"# {c.why}")
    for c in by_use["skip"]:
        lines.append(f"  # left out: {c.column}: {c.why}")
    lines += [
        "  split: {train: 0.8, validation: 0.1, test: 0.1, seed: 17}",
        "",
        "train:",
        f"  model_name: {name}_mlp",
        f"  epochs: {EPOCHS}   # at most: training stops once val_auc has not improved for 3 epochs, and keeps the "
        "best epoch's weights",
        "",
        "infer:",
        f"  input: {_source_yaml(source)}   # the same table; point it at new rows to score (no label needed)",
        f"  output_table: {name}_predictions",
    ]
    if not UNBALANCED <= rate <= 1 - UNBALANCED:
        lines.append(f"  threshold: auto   # {rate:.1%} positive: 0.5 would label too few rows; use the "
                     "validation split's best-F1 threshold")
    lines += ["", "evaluate:", f"  metrics_table: {name}_metrics", ""]
    return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, input_text: str, label: str, key: str | None, output: str) -> Path:
    """Profile ``input_text`` and write the config to ``output`` (refusing to overwrite); returns its path."""
    target = Path(output)
    if target.exists():
        raise PipelineError(f"--output {output} exists: name a new file (dlpipe init never overwrites a config)")
    if not target.parent.is_dir():
        raise PipelineError(f"--output {output}: folder {target.parent} does not exist")
    if target.suffix not in (".yaml", ".yml"):
        raise PipelineError(f"--output {output}: name a .yaml file")
    source = source_of(spark, cfg, input_text)
    df = read_source(spark, cfg, source)
    for name in (label, key):
        if name is not None and name not in df.columns:
            raise PipelineError(f"column {name!r} is not in {source.describe()} (its columns: {', '.join(df.columns)})")
    p = profile(df, label)
    if p.rows == 0:
        raise PipelineError(f"{source.describe()} has no rows: nothing to profile")
    if key is not None:
        key_why = "named with --key: hashed for the split, kept beside the predictions"
    else:
        found = find_key(p, label)
        key = found.name if found else None
        key_why = ("one distinct value per row: hashed for the split, kept beside the predictions" if found else
                   "no column names each row: the split hashes the whole row")
    text = render(p, source, source.describe(), label, key, key_why, name_of(target), target)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text)
    try:
        load_config(partial).check_stage("run")
    except ConfigError as err:  # a bug here, not the user's: say what and keep nothing
        partial.unlink()
        raise PipelineError(f"the config written for {source.describe()} does not load ({err}); please report it")
    partial.replace(target)
    print(text)
    print(f"init: profiled {p.rows:,} rows of {source.describe()}; wrote {target}")
    return target
