from pathlib import Path

import pytest

from dlpipe.pipelines.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def conf_dir(tmp_path):
    write(tmp_path, "base.yaml", "data_dir: var\ntrain:\n  num_proc: 2\n  batch_size: 256\n")
    return tmp_path


def test_demo_config_loads_with_base_layer():
    cfg = load_config(REPO / "conf" / "demo.yaml")
    spec = cfg.featurize.feature_spec()
    assert len(spec.numeric) == 28
    assert [f.column for f in spec.categorical] == ["detector_region", "run_period", "trigger_id"]
    assert spec.passthrough == ("row_id",)  # the key is always passed through
    assert cfg.train.num_proc == "auto"  # from base.yaml: every task slot
    assert cfg.stages == ("generate", "featurize", "train", "infer", "evaluate")
    assert cfg.source_files[-1].endswith("demo.yaml")


def test_layers_override_in_order(conf_dir):
    pipeline = write(conf_dir, "p.yaml", "train:\n  batch_size: 128\n  epochs: 7\n")
    write(conf_dir, "local.yaml", "train:\n  epochs: 9\n")
    cfg = load_config(pipeline, ["train.learning_rate=0.01", "spark.conf.spark.executor.memory=2g"])
    assert cfg.train.batch_size == 128
    assert cfg.train.epochs == 9
    assert cfg.train.num_proc == 2
    assert cfg.train.learning_rate == 0.01
    assert cfg.spark.conf == {"spark.executor.memory": "2g"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  bach_size: 3\n",
         "{p}: unknown key train.bach_size (valid keys here: activation, batch_norm, batch_size, class_weight, "
         "controller, dropout, early_stopping, embedding_dim, epochs, hidden_units, l1, l2, learning_rate, loss, model, model_name, "
         "momentum, num_proc, optimizer, pin_cpus, sample_weight, seed, start_timeout_s, use_gpu, warmup_epochs)"),
        ("trian:\n  epochs: 3\n",
         "{p}: unknown key trian (valid keys here: data_dir, database, evaluate, featurize, generate, infer, metastore, "
         "model_aliases_table, "
         "namespace, runs_table, spark, sql_server, stages, train, tune)"),
        ("train:\n  batch_size: -5\n", "{p}: train.batch_size: must be greater than 0, got -5"),
        ("metastore:\n  url: jdbc:mysql://db/m\n", "{p}: metastore.url: must be a PostgreSQL JDBC URL such as "
         "jdbc:postgresql://127.0.0.1:5433/metastore, got 'jdbc:mysql://db/m'"),
        ("metastore:\n  url: jdbc:postgresql://db:5432/m?user=x&password=s3cret\n", "{p}: metastore.url: must not "
         "hold the password: put it in the environment variable that password_env names"),
        ("train:\n  num_proc: 0\n", "{p}: train.num_proc: must be a positive integer or auto, got 0"),
        ("train:\n  epochs: three\n", "{p}: train.epochs: expected an integer, got str 'three'"),
        ("train:\n  epochs: true\n", "{p}: train.epochs: expected an integer, got bool True"),
        ("train:\n  activation: swish\n",
         "{p}: train.activation: expected one of 'relu', 'tanh', 'elu', 'leaky_relu', got str 'swish'"),
        ("train:\n  hidden_units: 64\n", "{p}: train.hidden_units: expected a list of int, got int 64"),
        ("train:\n  controller: nccl\n", "{p}: train.controller: expected one of 'gloo', 'mpi', got str 'nccl'"),
        ("train:\n  embedding_dim: big\n", "{p}: train.embedding_dim: expected int or 'auto', got str 'big'"),
        ("train:\n  model: transformer\n",
         "{p}: train.model: expected one of 'mlp', 'autoencoder', got str 'transformer'"),
        ("train:\n  early_stopping: {monitor: auc}\n",
         "{p}: train.early_stopping.monitor: expected one of 'val_auc', 'val_loss', 'val_accuracy', got str 'auc'"),
        ("infer:\n  threshold: 1.5\n", "{p}: infer.threshold: must be in (0, 1) or auto, got 1.5"),
        ("tune:\n  space: {num_proc: [1, 2]}\n",
         "{p}: tune.space.num_proc: is not a train key a scan can vary (tunable: epochs, batch_size, learning_rate, "
         "warmup_epochs, optimizer, momentum, hidden_units, activation, dropout, l1, l2, batch_norm, embedding_dim, "
         "seed)"),
        ("tune:\n  space: {learning_rate: [0.01, fast]}\n",
         "{p}: tune.space.learning_rate[1]: expected a number, got str 'fast'"),
        ("tune:\n  space: {dropout: [0.1, 1.5]}\n", "{p}: tune.space.dropout[1]: must be in [0, 1), got 1.5"),
        ("tune:\n  strategy: grid\n  space: {learning_rate: {low: 0.001, high: 0.1}}\n",
         "{p}: tune.space.learning_rate: a range {{low, high}} needs strategy random; give a list for grid"),
        ("tune:\n  space: {activation: {low: 1, high: 2}}\n",
         "{p}: tune.space.activation: a range needs a numeric key; give activation a list of values"),
        ("tune:\n  space: {learning_rate: {low: 0.1, high: 0.01}}\n",
         "{p}: tune.space.learning_rate: low must be below high"),
        ("tune:\n  space: {dropout: {low: 0.0, high: 0.5, log: true}}\n",
         "{p}: tune.space.dropout: a log range needs low > 0"),
        ("tune:\n  space: {learning_rate: {low: 0.0, high: 0.01}}\n",
         "{p}: tune.space.learning_rate.low: must be greater than 0, got 0.0"),
        ("tune:\n  space: {hidden_units: []}\n",
         "{p}: tune.space.hidden_units: give a non-empty list of values (or a range for random search), got []"),
        ("tune:\n  strategy: grid\n  trials: 3\n  space: {learning_rate: [0.1, 0.01], dropout: [0.0, 0.5]}\n",
         "{p}: tune.trials: the grid of tune.space has 4 combinations, more than tune.trials=3: raise tune.trials "
         "or use fewer values"),
        ("tune:\n  output_table: 'tune; drop'\n",
         "{p}: tune.output_table: must be a plain SQL identifier (letters, digits, underscore; not starting with a "
         "digit), got 'tune; drop'"),
        ("runs_table: runs-2\n",
         "{p}: runs_table: must be a plain SQL identifier (letters, digits, underscore; not starting with a digit), "
         "got 'runs-2'"),
        ("database: drop table x\n",
         "{p}: database: must be a plain SQL identifier (letters, digits, underscore; not starting with a digit), "
         "got 'drop table x'"),
        ("featurize:\n  split: {train: 0.8, validation: 0.3, test: 0.1}\n",
         "{p}: featurize.split.train: train + validation + test must be 1, got 1.2"),
        ("featurize:\n  input: {table: a, path: /x}\n", "{p}: featurize.input.table: give exactly one of 'table' or 'path'"),
        ("stages: [featurize, tran]\n",
         "{p}: stages[1]: expected one of 'generate', 'featurize', 'train', 'infer', 'evaluate', got str 'tran'"),
        ("train: 5\n", "{p}: train: must be a mapping, got int"),
        ("train:\n  learning_rate: .inf\n", "{p}: train.learning_rate: must be a finite number, got inf"),
        ("featurize:\n  numeric: [{columns: [a], transform: zscore}]\n",
         "{p}: featurize.numeric[0].transform: expected one of 'standard', 'minmax', 'robust', 'log', 'none', "
         "'ple', got str 'zscore'"),
        ("featurize:\n  numeric: [{columns: [a], transform: ple, bins: 0}]\n",
         "{p}: featurize.numeric[0].bins: must be between 1 and 256, got 0"),
        ("featurize:\n  datetime: [{column: t, parts: [hour, fortnight]}]\n",
         "{p}: featurize.datetime[0].parts: datetime feature 't': unknown part 'fortnight' (choose from hour, "
         "day_of_week, day_of_month, day_of_year, month, week_of_year, ordinal_day)"),
        ("featurize:\n  datetime: [{column: t, parts: {ordinal_day: cyclic}}]\n",
         "{p}: featurize.datetime[0].parts: datetime feature 't': ordinal_day counts days for trends and is "
         "encoded as a number, not cyclic"),
        ("featurize:\n  datetime: [{fields: {year: y, month: m, day: d}, parts: [month]}]\n",
         "{p}: featurize.datetime[0].name: name the features (for example name: departure) when the date is built "
         "from fields"),
        ("featurize:\n  datetime: [{name: dep, fields: {year: y, month: m, day: d}, parts: [hour]}]\n",
         "{p}: featurize.datetime[0].parts: datetime feature 'dep': the hour part needs an hour column among the "
         "fields"),
        ("featurize:\n  datetime: [{column: t, fields: {year: y}, parts: [hour]}]\n",
         "{p}: featurize.datetime[0].column: name either a column or the fields {{year: ..., month: ..., day: ..., "
         "hour: ...}} to build the date from"),
        ("featurize:\n  numeric: [a, {columns: [b], missing: zero}]\n",
         "{p}: featurize.numeric[1].missing.kind: expected one of 'mean', 'median', 'constant', 'reject', got str 'zero'"),
        ("featurize:\n  numeric: [{columns: [a], missing: {kind: constant}}]\n",
         "{p}: featurize.numeric[0].missing.kind: write the constant policy as {{constant: <fill value>}}; "
         "other policies take no value"),
        ("featurize:\n  numeric: [{columns: [a], clip: [0.99, 0.01]}]\n",
         "{p}: featurize.numeric[0].clip: expected two quantiles [lower, upper] with 0 <= lower < upper <= 1, "
         "got (0.99, 0.01)"),
        ("featurize:\n  categorical: [{columns: [c], encoding: onehot}]\n",
         "{p}: featurize.categorical[0].top_k: onehot needs top_k of at most 1000: the vector gets top_k + 1 slots "
         "(slot 0 for other values); index more values for an embedding instead"),
        ("featurize:\n  categorical: [{columns: [c], encoding: hash}]\n",
         "{p}: featurize.categorical[0].encoding: expected one of 'index', 'onehot', got str 'hash'"),
        ("featurize:\n  numeric: [a, {columns: [a_missing, b]}, {columns: [a], indicator: true}]\n",
         "{p}: featurize.numeric: column 'a' is listed twice under numeric: keep one entry"),
        ("featurize:\n  numeric: [{columns: [a], indicator: true}, a_missing]\n",
         "{p}: featurize.numeric: two feature table columns would be named 'a_missing': numeric column 'a_missing' "
         "and the missing indicator of 'a'; rename the input column or drop one of them from the spec"),
        ("featurize:\n  numeric: [split]\n",
         "{p}: featurize.numeric: two feature table columns would be named 'split': the reserved column 'split' and "
         "numeric column 'split'; rename the input column or drop one of them from the spec"),
        ("featurize:\n  categorical: [c]\n  numeric: [c_index]\n",
         "{p}: featurize.numeric: two feature table columns would be named 'c_index': numeric column 'c_index' and "
         "the index encoding of 'c'; rename the input column or drop one of them from the spec"),
        ("featurize:\n  label: y\n  numeric: [y]\n",
         "{p}: featurize.numeric: the label column 'y' cannot also be a feature"),
        ("infer:\n  model_version: V3!\n",
         "{p}: infer.model_version: must be a version such as v3 (or 3), an alias such as production, or latest, "
         "got 'V3!'"),
        ("infer:\n  partition_by: [run_date, run_date]\n",
         "{p}: infer.partition_by: names a column twice: ['run_date', 'run_date']"),
        ("infer:\n  partition_by: [score]\n",
         "{p}: infer.partition_by[0]: expected one of 'run_date', 'model_name', 'model_version', got str 'score'"),
        ("infer:\n  on_empty: ignore\n", "{p}: infer.on_empty: expected one of 'skip', 'fail', got str 'ignore'"),
        ("sql_server:\n  port: 70000\n", "{p}: sql_server.port: must be a TCP port (1-65535), got 70000"),
        ("namespace: team-a\n", "{p}: namespace: must be a plain SQL identifier (letters, digits, underscore; not "
                                 "starting with a digit), got 'team-a'"),
    ],
)
def test_bad_values_name_key_and_file(conf_dir, text, message):
    path = write(conf_dir, "p.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == message.format(p=path)


def test_error_names_the_layer_that_set_the_key(conf_dir):
    write(conf_dir, "base.yaml", "train:\n  batch_size: 0\n")
    path = write(conf_dir, "p.yaml", "train:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=rf"^{conf_dir / 'base.yaml'}: train.batch_size: must be greater than 0, got 0$"):
        load_config(path)


def test_bad_override_names_set(conf_dir):
    path = write(conf_dir, "p.yaml", "")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.num_proc=0"])
    assert str(err.value) == "--set: train.num_proc: must be a positive integer or auto, got 0"
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.epochs"])
    assert str(err.value) == "--set 'train.epochs': expected section.key=value"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert str(err.value) == (
        f"config file {tmp_path / 'nope.yaml'} not found (pass --config PATH to a pipeline YAML such as conf/demo.yaml)"
    )


def test_yaml_syntax_error_names_line(conf_dir):
    path = write(conf_dir, "p.yaml", "train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: YAML syntax error at line 3, column 1:")


def test_featurize_needs_columns(conf_dir):
    cfg = load_config(write(conf_dir, "p.yaml", ""))
    cfg.check_stage("sql")
    with pytest.raises(ConfigError, match="featurize.numeric: name at least one numeric or categorical feature column"):
        cfg.check_stage("featurize")


def test_table_source_is_replaced_whole_not_merged(conf_dir):
    path = write(conf_dir, "p.yaml", "featurize:\n  input: {table: raw_events}\n")
    cfg = load_config(path, ["featurize.input={path: /data/x, format: parquet}"])
    assert (cfg.featurize.input.table, cfg.featurize.input.path, cfg.featurize.input.format) == (None, "/data/x", "parquet")


def test_feature_spec_shorthands(conf_dir):
    path = write(conf_dir, "p.yaml", """
featurize:
  label: {column: Label, positive: s, negative: b}
  key: null
  passthrough: [EventId]
  numeric:
    - a
    - {columns: [b, c], transform: log, missing: {constant: 0}, indicator: true, clip: [0.001, 0.999]}
  categorical:
    - {columns: [region], encoding: onehot, top_k: 5, missing: value}
    - {columns: [trigger], min_count: 10}
""")
    spec = load_config(path).featurize.feature_spec()
    assert (spec.label.column, spec.label.positive, spec.label.negative) == ("Label", "s", "b")
    assert spec.passthrough == ("EventId",)
    a, b, c = spec.numeric
    assert (a.column, a.transform, a.missing, a.indicator, a.clip) == ("a", "standard", "mean", False, None)
    assert (b.transform, b.missing, b.fill_value, b.indicator, b.clip) == ("log", "constant", 0.0, True, (0.001, 0.999))
    assert c.column == "c" and c.transform == "log"
    region, trigger = spec.categorical
    assert (region.encoding, region.top_k, region.missing, region.output_column) == ("onehot", 5, "value", "region_onehot")
    assert (trigger.encoding, trigger.min_count, trigger.output_column) == ("index", 10, "trigger_index")
    assert [name for name, _ in spec.output_columns()] == [
        "EventId", "Label", "a", "b", "c", "b_missing", "c_missing", "region_onehot", "trigger_index"]


def test_datetime_entries_and_a_column_used_twice(conf_dir):
    path = write(conf_dir, "p.yaml", """
featurize:
  numeric: [hour, {columns: [distance], transform: ple, bins: 16}]
  categorical: [hour]
  datetime:
    - {column: time_hour, parts: [day_of_week, day_of_year]}
    - {name: dep, fields: {year: year, month: month, day: day, hour: hour},
       parts: {hour: onehot, week_of_year: index, ordinal_day: number}}
""")
    spec = load_config(path).featurize.feature_spec()
    assert [name for name, _ in spec.output_columns()][2:] == [
        "hour", "distance_ple", "hour_index", "time_hour_day_of_week_cyclic", "time_hour_day_of_year_cyclic",
        "dep_hour_onehot", "dep_week_of_year_index", "dep_ordinal_day"]
    assert spec.numeric[1].bins == 16
    assert spec.feature_input_columns == ("hour", "distance", "time_hour", "year", "month", "day")


def test_numeric_label_classes_may_be_numbers(conf_dir):
    path = write(conf_dir, "p.yaml", "featurize:\n  label: {column: y, positive: 1, negative: -1}\n  numeric: [a]\n")
    assert load_config(path).featurize.label.positive == "1"


def test_a_search_space_is_replaced_whole_not_merged(conf_dir):
    write(conf_dir, "base.yaml", "tune:\n  space: {learning_rate: [0.1, 0.01]}\n")
    path = write(conf_dir, "p.yaml", "tune:\n  space: {dropout: [0.0, 0.2]}\n")
    assert load_config(path).tune.space == {"dropout": [0.0, 0.2]}


def test_a_namespace_prefixes_the_database_and_separates_the_model_store(conf_dir):
    plain = load_config(write(conf_dir, "p.yaml", "database: dl\n"))
    team = load_config(write(conf_dir, "q.yaml", "database: dl\nnamespace: physics\n"))
    assert (plain.database_name, plain.qualified("predictions")) == ("dl", "dl.predictions")
    assert (team.database_name, team.qualified("predictions")) == ("physics__dl", "physics__dl.predictions")
    assert plain.outputs_path == plain.data_path
    assert team.outputs_path == team.data_path / "namespaces" / "physics"


def test_namespaced_database_names_cannot_collide(conf_dir):
    """phys + ics_dlpipe and phys_ics + dlpipe once both named phys_ics_dlpipe: one team's featurize replaced the
    other's feature table."""
    one = load_config(write(conf_dir, "a.yaml", "namespace: phys\ndatabase: ics_dlpipe\n"))
    other = load_config(write(conf_dir, "b.yaml", "namespace: phys_ics\ndatabase: dlpipe\n"))
    assert one.database_name != other.database_name
    path = write(conf_dir, "c.yaml", "database: phys__dlpipe\n")
    with pytest.raises(ConfigError, match=r"database: must not contain a double underscore"):
        load_config(path)
