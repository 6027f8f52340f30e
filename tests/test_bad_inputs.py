"""The catalogue of bad inputs: each case a small input and a config written like docs/configuration.md's "Your own
data" example, what the user gets (the exit code and the one line, or the stage's error), and what was written
(nothing, or only what is correct).

Cases whose set-up belongs to other tests are tested there:

- a predictions run deleted after it was written is not reused by a retry: tests/pipelines/test_skip_check.py
- a feature table written since its artifact, or missing a data file: tests/pipelines/test_train_checks.py
- a training split of one class: tests/pipelines/test_train_checks.py
- a key that names several rows at evaluate: tests/pipelines/test_evaluate_checks.py
- a model file cut short by a kill; SIGTERM to the process group: tests/pipelines/test_train.py
- two namespaces that once named the same database: tests/pipelines/test_config.py
"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipelines.cli import BIN, REPO

ROWS = 400

OWN_DATA = """\
stages: [featurize, train, infer, evaluate]
featurize:
  input: {{path: {input}, format: parquet}}
  output_table: {table}
  label: churned
  key: customer_id
  numeric: [tenure_months, monthly_charges]
  categorical: [region]
train:
  model_name: churn_mlp
infer:
  input: {{path: {input}, format: parquet}}
  output_table: churn_predictions
"""


def customers(**changes) -> pa.Table:
    """ROWS customers; ``changes`` replaces whole columns."""
    columns = {
        "customer_id": [f"c{i:05d}" for i in range(ROWS)],
        "tenure_months": [float(i % 72) for i in range(ROWS)],
        "monthly_charges": [20.0 + (i * 7) % 100 for i in range(ROWS)],
        "region": [("north", "south", "east", "west")[i % 4] for i in range(ROWS)],
        "churned": [int(i % 3 == 0) for i in range(ROWS)],
    }
    columns.update(changes)
    return pa.table(columns)


def write_input(folder: Path, *tables: pa.Table) -> Path:
    folder.mkdir(parents=True)
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{i}.parquet")
    return folder


def config_file(tmp_path: Path, input: Path, table: str = "churn_features") -> Path:
    path = tmp_path / "churn.yaml"
    path.write_text(OWN_DATA.format(input=input, table=table))
    return path


def dlpipe(command: str, config: Path, *sets: str) -> subprocess.CompletedProcess:
    args = [str(BIN / "dlpipe"), command, "--config", str(config)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ refused by the config, before Spark starts

CONFIG_CASES = [
    ("a key column named like a predictions column",
     ["featurize.key=run_id"],
     "featurize.key: column 'run_id' takes the name of a column the predictions table has itself: rename it in "
     "the input"),
    ("a column name with a dot",
     ["featurize.numeric=[tenure.months]"],
     "featurize.numeric: column 'tenure.months' has a dot or a backtick in its name, which Spark reads as a struct "
     "field or a quote: rename the column in the input (or in a view over it)"),
    ("a column name with a backtick",
     ["featurize.passthrough=[cust`id]"],
     "featurize.passthrough: column 'cust`id' has a dot or a backtick in its name, which Spark reads as a struct "
     "field or a quote: rename the column in the input (or in a view over it)"),
    ("a memory size that is not one",
     ["spark.driver_memory=lots"],
     "spark.driver_memory: must be an amount of memory such as 4g or 512m, got 'lots'"),
    ("an infinite learning rate",
     ["train.learning_rate=.inf"],
     "train.learning_rate: must be a finite number, got inf"),
    ("a database name with the namespace separator",
     ["namespace=phys", "database=ics__dlpipe"],
     "database: must not contain a double underscore (it separates namespace and database), got 'ics__dlpipe'"),
]


@pytest.mark.parametrize("case, sets, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_cases_fail_at_once_in_one_line_and_write_nothing(tmp_path, case, sets, message):
    data_dir = tmp_path / "var"
    config = config_file(tmp_path, tmp_path / "missing.parquet")
    out = dlpipe("featurize", config, f"data_dir={data_dir}", *sets)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"dlpipe featurize: config error: --set: {message}"
    assert not data_dir.exists()


# ------------------------------------------------------------------ refused by featurize, nothing written


@pytest.fixture()
def own_data(spark, test_config, tmp_path):
    """The config of an input folder of the given tables, writing feature table ``table``, with ``sets``
    overrides: featurize runs in this process."""
    from dlpipe.pipelines.config import load_config

    def make(*tables: pa.Table, table: str, sets: tuple[str, ...] = ()):
        folder = write_input(tmp_path / "input", *tables)
        cfg = load_config(config_file(tmp_path, folder, table),
                          [f"data_dir={test_config.data_dir}", "database=bad_inputs", *sets])
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database_name}")
        return cfg
    return make


def featurize_error(spark, cfg) -> str:
    """The one line the command prints for featurize's failure; checks that it wrote neither table nor artifact."""
    from dlpipe.pipelines import featurize
    from dlpipe.pipelines.errors import spark_failure
    from dlpipe.pipelines.store import latest_artifact_version

    with pytest.raises(Exception) as err:
        featurize.run(spark, cfg)
    assert not spark.catalog.tableExists(cfg.qualified(cfg.featurize.output_table))
    assert latest_artifact_version(cfg, cfg.featurize.output_table) is None
    return spark_failure(err.value) or str(err.value)


def test_null_keys_are_refused_before_anything_is_written(spark, own_data):
    """All-null keys once put every row in the training split, and train then asked for another num_proc."""
    cfg = own_data(customers(customer_id=pa.array([None] * ROWS, pa.string())), table="null_keys")
    assert featurize_error(spark, cfg) == (
        f"key column 'customer_id' is null in {ROWS} of {ROWS} rows: every row needs a key (it places the row in a "
        "split and joins its prediction to its label); fix the input or set featurize.key to another column")


def test_a_value_beyond_float32_fails_featurize_and_commits_nothing(spark, own_data):
    charges = [20.0] * (ROWS - 13) + [float("nan"), float("inf"), -float("inf")] + [1e300] * 10
    cfg = own_data(customers(monthly_charges=charges), table="beyond_float32",
                   sets=("featurize.numeric=[tenure_months, {columns: [monthly_charges], transform: none}]",))
    assert featurize_error(spark, cfg) == (
        "feature monthly_charges of column 'monthly_charges' is infinite for some rows (a value beyond float32's "
        "range of 3.4e38 once scaled): clip the column (clip: [0.001, 0.999]) or fix the input")


def test_moments_that_overflowed_now_scale_the_column(spark, own_data):
    """NaN, +-inf and ten values of 1e308: the mean and deviation once overflowed to null, the column went
    unscaled into the table as float32 infinity, and every row scored 0.498429 (AUC 0.5)."""
    from pyspark.sql import functions as F

    from dlpipe.pipelines import featurize

    charges = [20.0 + i % 50 for i in range(ROWS - 13)] + [float("nan"), float("inf"), -float("inf")] + [1e308] * 10
    cfg = own_data(customers(monthly_charges=charges), table="overflowed_moments")
    result = featurize.run(spark, cfg)
    stats = result.fitted.numeric["monthly_charges"]
    assert math.isfinite(stats.mean) and math.isfinite(stats.std) and stats.scale == stats.std
    biggest = spark.table(result.table).agg(F.max(F.abs("monthly_charges"))).first()[0]
    assert math.isfinite(biggest) and biggest == pytest.approx((1e308 - stats.mean) / stats.std, rel=1e-5)


def test_a_parquet_file_cut_short_is_named(spark, own_data):
    cfg = own_data(customers(), customers(customer_id=[f"d{i:05d}" for i in range(ROWS)]), table="cut_short")
    damaged = Path(cfg.featurize.input.path) / "part-1.parquet"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    assert featurize_error(spark, cfg) == (
        f"cannot read file file://{damaged}: it is damaged or cut short; restore it from its source or move it out "
        "of the folder")


def test_files_of_two_schemas_are_named(spark, own_data):
    cfg = own_data(customers(), customers(customer_id=[f"d{i:05d}" for i in range(ROWS)],
                                          monthly_charges=[str(i) for i in range(ROWS)]), table="two_schemas")
    other = Path(cfg.featurize.input.path) / "part-1.parquet"
    assert featurize_error(spark, cfg) == (
        f"input file file://{other} stores column monthly_charges as Parquet BINARY, where the input's schema says "
        "double: the files of one input must share a schema (move that file out, or convert it)")


def test_a_categorical_that_is_an_id_is_warned_about(spark, own_data, capsys):
    from dlpipe.pipelines import featurize

    rows = 2400
    ids = [f"r{i}" for i in range(rows)]
    table = customers().take([i % ROWS for i in range(rows)]).set_column(0, "customer_id", pa.array(ids))
    cfg = own_data(table.append_column("account", pa.array(ids)), table="id_like",
                   sets=("featurize.categorical=[region, account]",))
    featurize.run(spark, cfg)
    kept = int(rows * cfg.featurize.split.train * 0.9)  # the training split holds about 80% of the rows
    warning = next(line for line in capsys.readouterr().out.splitlines() if "looks like an id" in line)
    count = int(warning.split(" keeps ")[1].split(" values")[0].replace(",", ""))
    assert count > kept and warning == (
        f"  warning: account keeps {count:,} values, {count:,} of them seen once in training: it looks like an id, "
        "which a model cannot learn from; list it under featurize.passthrough or set min_count (for example 10)")


# ------------------------------------------------------------------ the same, as a user sees it


@pytest.mark.slow  # a Spark start of its own
def test_the_command_line_prints_a_data_failure_in_one_line(tmp_path):
    folder = write_input(tmp_path / "input", customers(), customers(customer_id=[f"d{i:05d}" for i in range(ROWS)]))
    damaged = folder / "part-1.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    out = dlpipe("featurize", config_file(tmp_path, folder), f"data_dir={tmp_path / 'var'}")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"dlpipe featurize: error: cannot read file file://{damaged}: it is damaged or cut short; restore it from "
        "its source or move it out of the folder")
    assert "Traceback" not in out.stderr + out.stdout


# ------------------------------------------------------------------ what stays private


def test_spark_python_workers_do_not_import_from_the_working_directory(spark):
    """The tests run from the repository root, which holds a models/ package: Spark's Python workers (started
    with python -m, which puts the working directory first on sys.path) once imported such folders in place of
    the installed packages."""
    import os
    import sys

    def where(_):
        yield os.getcwd(), sys.path

    [(cwd, path)] = spark.sparkContext.parallelize([0], 1).mapPartitions(where).collect()
    assert Path(cwd) == Path.cwd() and (Path.cwd() / "models" / "__init__.py").is_file()
    assert cwd not in path and "" not in path


@pytest.mark.slow  # a Spark start of its own
def test_credentials_stay_out_of_files_and_the_data_folder_is_owner_only(tmp_path):
    data_dir = tmp_path / "var"
    secret = "AKIAsecret-value-1234"
    out = subprocess.run([str(BIN / "dlpipe"), "sql", "--set", f"data_dir={data_dir}", "--set",
                          f"spark.conf={{spark.hadoop.fs.s3a.secret.key: {secret}, spark.executor.cores: '1'}}",
                          "SELECT 1 AS one"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    defaults = (data_dir / "conf" / "spark-defaults.conf").read_text()
    assert "spark.hadoop.fs.s3a.secret.key ***" in defaults and "spark.executor.cores 1" in defaults
    assert secret not in out.stdout + out.stderr
    assert data_dir.stat().st_mode & 0o777 == 0o700  # nobody else reaches anything inside
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
        if "warehouse" not in path.parts:  # Hadoop writes the tables' files with its own umask, 022
            assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"
