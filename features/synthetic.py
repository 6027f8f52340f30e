"""A synthetic, HIGGS-shaped event table, generated in parallel by Spark.

Every value is a pure function of ``(seed, row_id, column)`` through a 64-bit hash, so the table is identical for
any partition count and any cluster, and no array is ever built on the driver.

Columns:

- ``row_id``: 0 .. rows-1.
- 21 low-level kinematic columns (:data:`LOW_LEVEL`): lepton, missing energy and four jets (pt, eta, phi, b-tag).
- 7 high-level columns (:data:`HIGH_LEVEL`): invariant-mass-like quantities derived non-linearly from the
  low-level ones, as in the UCI HIGGS data set.
- 3 skewed categorical columns (:data:`CATEGORICAL`): ``detector_region`` (5 values), ``run_period`` (about 100)
  and ``trigger_id`` (about 10,000, Zipf-like).
- ``label`` (0/1), drawn from ``true_prob``, a known non-linear function of the features.
- ``true_prob``: the probability the label was drawn from. Never a feature: it gives the best achievable
  (Bayes-optimal) AUC to compare every model against.
- ``event_weight``: how many real events a row stands for, as in a simulated physics sample: signal is rare
  (weights 0.001 to 0.005), background common (0.2 to 5, most of it light), so the weighted signal is about 1/550
  of the background, as in the ATLAS Higgs Machine Learning Challenge's data. Never a feature.

Low-level numeric and categorical columns are null at ``null_rate`` each, independently; the label is drawn from
the complete values, as a detector that loses a measurement does not change the physics.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

OBJECTS = ("lepton", "jet1", "jet2", "jet3", "jet4")
LOW_LEVEL: tuple[str, ...] = (
    "lepton_pt", "lepton_eta", "lepton_phi", "missing_energy_magnitude", "missing_energy_phi",
    *(f"{jet}_{part}" for jet in OBJECTS[1:] for part in ("pt", "eta", "phi", "btag")),
)
HIGH_LEVEL: tuple[str, ...] = ("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb")
NUMERIC: tuple[str, ...] = LOW_LEVEL + HIGH_LEVEL
CATEGORICAL: tuple[str, ...] = ("detector_region", "run_period", "trigger_id")
REGIONS = ("barrel", "endcap_a", "endcap_c", "forward", "gap")
REGION_WEIGHTS = (0.55, 0.2, 0.15, 0.07, 0.03)
REGION_EFFECT = (0.0, 0.25, 0.25, -0.5, -0.9)

_MANTISSA = (1 << 53) - 1


def uniform(seed: int, stream: int) -> Column:
    """A uniform value in (0, 1) from the hash of (seed, row_id, stream): the same for any partitioning."""
    bits = F.xxhash64(F.lit(seed), F.col("row_id"), F.lit(stream)).bitwiseAND(F.lit(_MANTISSA))
    return (bits.cast("double") + 0.5) / float(1 << 53)


def normal(seed: int, stream: int) -> Column:
    """A standard normal value (Box-Muller over two hashed uniforms)."""
    u1, u2 = uniform(seed, 2 * stream + 1000), uniform(seed, 2 * stream + 1001)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def _pair_mass(a: str, b: str) -> Column:
    """Invariant mass of two massless objects from (pt, eta, phi)."""
    pt_a, eta_a, phi_a = (F.col(f"{a}_{p}") for p in ("pt", "eta", "phi"))
    pt_b, eta_b, phi_b = (F.col(f"{b}_{p}") for p in ("pt", "eta", "phi"))
    return 2.0 * pt_a * pt_b * (F.cosh(eta_a - eta_b) - F.cos(phi_a - phi_b))


def _transverse_mass_sq() -> Column:
    return 2.0 * F.col("lepton_pt") * F.col("missing_energy_magnitude") * (
        1.0 - F.cos(F.col("lepton_phi") - F.col("missing_energy_phi"))
    )


def _low_level(seed: int) -> list[Column]:
    columns = []
    stream = 0
    for obj in OBJECTS:
        stream += 1
        columns.append(F.exp(0.55 * normal(seed, stream) - (0.1 if obj == "lepton" else 0.0)).alias(f"{obj}_pt"))
        stream += 1
        columns.append((1.1 * normal(seed, stream)).alias(f"{obj}_eta"))
        stream += 1
        columns.append((math.pi * (2.0 * uniform(seed, stream) - 1.0)).alias(f"{obj}_phi"))
        if obj != "lepton":
            stream += 1
            u = uniform(seed, stream)
            columns.append(F.when(u < 0.55, 0.0).when(u < 0.8, 1.1).otherwise(2.2).alias(f"{obj}_btag"))
        else:
            stream += 1
            columns.append(F.exp(0.6 * normal(seed, stream)).alias("missing_energy_magnitude"))
            stream += 1
            columns.append((math.pi * (2.0 * uniform(seed, stream) - 1.0)).alias("missing_energy_phi"))
    return columns


def _high_level() -> list[Column]:
    m_jj2 = _pair_mass("jet1", "jet2")
    m_bb2 = _pair_mass("jet3", "jet4")
    m_jjj2 = m_jj2 + _pair_mass("jet1", "jet3") + _pair_mass("jet2", "jet3")
    m_lv2 = _transverse_mass_sq()
    m_jlv2 = m_lv2 + _pair_mass("lepton", "jet1")
    return [
        F.sqrt(m_jj2).alias("m_jj"),
        F.sqrt(m_jjj2).alias("m_jjj"),
        F.sqrt(m_lv2).alias("m_lv"),
        F.sqrt(m_jlv2).alias("m_jlv"),
        F.sqrt(m_bb2).alias("m_bb"),
        F.sqrt(m_jj2 + m_bb2).alias("m_wbb"),
        F.sqrt(m_jj2 + m_bb2 + m_jlv2).alias("m_wwbb"),
    ]


def _categorical(seed: int) -> list[Column]:
    u_region, u_period, u_trigger = uniform(seed, 201), uniform(seed, 202), uniform(seed, 203)
    # Cumulative thresholds: u < 0.55 -> barrel, u < 0.75 -> endcap_a, ... otherwise the last region.
    region = F.lit(REGIONS[-1])
    bounds = [sum(REGION_WEIGHTS[: i + 1]) for i in range(len(REGIONS) - 1)]
    for name, bound in reversed(list(zip(REGIONS[:-1], bounds))):
        region = F.when(u_region < bound, name).otherwise(region)
    period = F.format_string("P%03d", F.floor(100.0 * u_period * u_period).cast("int"))
    trigger = F.format_string("T%05d", F.floor(10000.0 * F.pow(u_trigger, 3.0)).cast("int"))
    return [region.alias("detector_region"), period.alias("run_period"), trigger.alias("trigger_id")]


def true_logit() -> Column:
    """The known non-linear function of the complete features that the label is drawn from."""
    c = F.col
    region_effect = F.coalesce(*[F.when(c("detector_region") == r, e) for r, e in zip(REGIONS, REGION_EFFECT)])
    period = F.substring(c("run_period"), 2, 3).cast("double")
    return (
        1.6 * F.tanh(F.log(c("m_jj")) - 0.6)
        - 0.9 * F.pow(F.log(c("m_bb")) - 0.4, 2.0)
        + 0.45 * c("lepton_eta") * c("jet1_eta")
        + 0.35 * (c("jet1_btag") + c("jet2_btag") - c("jet3_btag"))
        - 0.6 * F.log(c("missing_energy_magnitude"))
        + 0.5 * F.cos(c("jet1_phi") - c("lepton_phi"))
        + region_effect
        + 0.3 * F.sin(period / 8.0)
        + 0.2
    )


def generate_events(spark: SparkSession, rows: int, seed: int, partitions: int, null_rate: float,
                    shift: Mapping | None = None) -> DataFrame:
    """The synthetic event table described in the module docstring, ``rows`` rows in ``partitions`` partitions,
    with the columns of ``shift`` moved (``shifted``)."""
    ids = spark.range(0, rows, numPartitions=partitions).withColumnRenamed("id", "row_id")
    complete = ids.select("row_id", *_low_level(seed), *_categorical(seed)).select("*", *_high_level())
    prob = F.lit(1.0) / (1.0 + F.exp(-true_logit()))
    labelled = complete.withColumn("true_prob", prob).withColumn(
        "label", (uniform(seed, 300) < F.col("true_prob")).cast("int")
    )
    with_nulls = []
    for i, name in enumerate(LOW_LEVEL + CATEGORICAL):
        keep = uniform(seed, 400 + i) >= null_rate
        with_nulls.append(F.when(keep, F.col(name)).alias(name))
    u = uniform(seed, 500)
    weight = F.when(F.col("label") == 1, 0.001 + 0.004 * u).otherwise(0.2 + 4.8 * u * u)
    events = labelled.select("row_id", *with_nulls, *HIGH_LEVEL, "label", "true_prob", weight.alias("event_weight"))
    return shifted(events, seed, shift or {})


def shifted(events: DataFrame, seed: int, shift: Mapping) -> DataFrame:
    """``events`` with the columns of ``shift`` moved (column -> an object with ``mean``, ``scale``, ``missing``
    and ``new_values``): a numeric value becomes ``value * scale + mean``, a share ``missing`` of the values
    becomes null, a share ``new_values`` of a categorical column's values becomes ``NEW<n>`` (values the generator
    never makes). Applied after the label is drawn: the measurement moves, the physics does not."""
    columns = {}
    for i, (name, s) in enumerate(sorted(shift.items())):
        value = F.col(name)
        if name in NUMERIC:
            value = value * F.lit(float(s.scale)) + F.lit(float(s.mean))
        if s.new_values:
            u = uniform(seed, 700 + i)
            value = F.when(u < s.new_values, F.format_string("NEW%d", F.floor(u * 1000).cast("int"))).otherwise(value)
        if s.missing:
            value = F.when(uniform(seed, 600 + i) >= s.missing, value)
        columns[name] = value
    return events.withColumns(columns) if columns else events
