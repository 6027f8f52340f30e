"""``dlpipe init``: a table of every kind of column profiled in Spark, the config it writes (each choice and its
reason), refusals in one line, and the written config run as is by ``dlpipe run``."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import yaml

from dlpipe.pipelines import init_config
from dlpipe.pipelines.config import load_config
from dlpipe.pipelines.errors import PipelineError
from tests.pipelines.cli import dlpipe, ok

ROWS = 2000


def flights_like(spark, path, rows=ROWS, label="yes_no"):
    """Columns as real tables have them: an id, a small integer domain, a number with holes, text categories
    (one with a long tail of rare values), an id-like text, a timestamp, a date as text, a constant, a label."""
    start = dt.datetime(2013, 1, 1, 5)
    data = [(i, 1 + i % 12, None if i % 10 == 0 else float(i % 97) * 1.5, 1000.0 if i % 100 == 0 else float(i % 5),
             -1000.0 if i % 100 == 0 else float(i % 5) - 2, "ABC"[i % 3], f"N{i % 700}", f"T{i:06d}",
             start + dt.timedelta(hours=7 * i), (dt.date(2013, 1, 1) + dt.timedelta(days=i % 365)).isoformat(), 2013,
             ("yes" if (i * 7919) % 10 < 3 else "no") if label == "yes_no" else i % 5)
            for i in range(rows)]
    schema = ("flight_id long, month int, distance double, wait double, drift double, carrier string, tailnum string, ticket string, "
              "scheduled timestamp, day string, year int, delayed " + ("string" if label == "yes_no" else "int"))
    spark.createDataFrame(data, schema).repartition(2).write.mode("overwrite").parquet(str(path))
    return path


@pytest.fixture(scope="module")
def table(spark, tmp_path_factory):
    return flights_like(spark, tmp_path_factory.mktemp("init") / "flights.parquet")


def test_the_config_explains_each_choice_and_loads(spark, test_config, table, tmp_path, capsys):
    out = init_config.run(spark, test_config, str(table), "delayed", None, str(tmp_path / "flights.yaml"))
    text = out.read_text()
    featurize = load_config(out).featurize
    spec = featurize.feature_spec()
    assert featurize.key == "flight_id" and "key: flight_id   # one distinct value per row" in text
    assert (featurize.label.positive, featurize.label.negative) == ("yes", "no")  # the rarer class is positive
    assert "the rarer class is positive: 30.0% (600 of 2,000)" in text
    assert [(f.column, f.transform, f.indicator, f.clip) for f in spec.numeric] == [
        ("distance", "standard", True, None), ("wait", "log", False, None), ("drift", "standard", False, (0.001, 0.999)),
        ("month", "standard", False, None)]
    assert re.search(r"distance\], transform: standard, indicator: true\}   # number from 0 to 144, ~9\d values; "
                     r"10.0% missing", text)
    assert re.search(r"wait\], transform: log\}   # number from 0 to 1000, ~\d+ values; heavy tail \(quartiles "
                     r"\d, \d\): log1p, then z-scored", text)
    assert [(f.column, f.min_count) for f in spec.categorical] == [("carrier", 5), ("tailnum", 5), ("month", 1)]
    assert [(f.output_column) for f in spec.datetime] == [  # too few rows to embed the days of the year
        "scheduled_hour_cyclic", "scheduled_day_of_week_index", "scheduled_day_of_year_cyclic",
        "day_day_of_week_index", "day_day_of_year_cyclic"]
    assert "# text that parses as a timestamp (100%): calendar parts, always at midnight: no hour" in text
    assert "# left out: ticket: looks like an id: ~" in text
    assert "# left out: year: one value: nothing to learn from" in text
    assert "threshold: auto   # 30.0% positive" in text
    assert yaml.safe_load(text)["train"] == {"model_name": "flights_mlp", "epochs": 20}
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"wrote {out}")


def test_refusals_are_one_line(spark, test_config, table, tmp_path):
    existing = tmp_path / "taken.yaml"
    existing.write_text("stages: [train]\n")
    with pytest.raises(PipelineError, match=r"^--output .*taken.yaml exists: name a new file \(dlpipe init never "
                                            r"overwrites a config\)$"):
        init_config.run(spark, test_config, str(table), "delayed", None, str(existing))
    with pytest.raises(PipelineError, match=r"^column 'late' is not in parquet path .* \(its columns: flight_id, "):
        init_config.run(spark, test_config, str(table), "late", None, str(tmp_path / "a.yaml"))
    five = flights_like(spark, tmp_path / "five.parquet", rows=50, label="five")
    with pytest.raises(PipelineError) as err:
        init_config.run(spark, test_config, str(five), "delayed", None, str(tmp_path / "b.yaml"))
    assert str(err.value) == ("label column 'delayed' has 5 classes (0, 1, 2, 3, 4); dlpipe trains binary "
                              "classifiers: derive a 0/1 column first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.parquet", "taken.yaml"]


@pytest.mark.slow
def test_the_written_config_runs_as_is(spark, table, tmp_path):
    data = tmp_path / "var"
    config = tmp_path / "flights.yaml"
    ok(dlpipe("init", "--input", str(table), "--label", "delayed", "--output", str(config), "--set", f"data_dir={data}"))
    run = ok(dlpipe("run", "--config", str(config), "--set", f"data_dir={data}", "--set", "train.epochs=2"))
    for stage in ("featurize", "train", "infer", "evaluate"):
        assert re.search(rf"^  {stage} +succeeded", run.stdout, re.MULTILINE), run.stdout[-3000:]
    assert re.search(r"evaluate: run \S+ on \d+ validation rows: AUC 0\.\d+", run.stdout)
