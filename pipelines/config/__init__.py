"""Pipeline configuration: the schema of every section (``schema``) and the loader of YAML layers (``loader``)."""
from dlpipe.pipelines.config.loader import load_config
from dlpipe.pipelines.config.schema import (STAGES, TRAIN_EXECUTION_KEYS, Config, ConfigError, SparkConfig,
                                            TableSource, TuneConfig)

__all__ = ["STAGES", "TRAIN_EXECUTION_KEYS", "Config", "ConfigError", "SparkConfig", "TableSource", "TuneConfig",
           "load_config"]
