"""Run ids: they tag prediction rows and go into SQL predicates, so they are checked against a strict pattern."""
from __future__ import annotations

import datetime as dt
import re

from pipelines.errors import PipelineError

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def new_run_id() -> str:
    """A new run id: the UTC time, e.g. 20261127T012729Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise PipelineError(f"run id {run_id!r} is not valid: use letters, digits and _ . : - (at most 64, starting with a letter or digit)")
    return run_id
