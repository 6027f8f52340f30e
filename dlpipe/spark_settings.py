"""Spark session settings for the length of one job."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping


@contextmanager
def spark_settings(spark, settings: Mapping[str, str]) -> Iterator[None]:
    """``with spark_settings(spark, {key: value}):`` the session has these settings inside the block; afterwards each
    key is back to what it was before: the value it had (whoever set it), or unset if it had none."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
