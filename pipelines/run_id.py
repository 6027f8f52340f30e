"""Run ids (they tag prediction rows and go into SQL predicates, so they are checked against a strict pattern),
the stages a run does, and the folder of its log file, summaries and report."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def new_run_id() -> str:
    """A new run id: the UTC time, e.g. 20261127T012729Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise PipelineError(f"run id {run_id!r} is not valid: use letters, digits and _ . : - (at most 64, starting with a letter or digit)")
    return run_id


def run_folder(cfg: Config, run_id: str) -> Path:
    """Where a run's log file, summary and report go."""
    return cfg.outputs_path / "runs" / run_id


def selected_stages(cfg: Config, names: list[str] | None) -> tuple[str, ...]:
    """The stages to run, in pipeline order: ``names`` (from ``--stages``) or the config's ``stages``."""
    from dlpipe.pipelines.stage import registry

    stages = tuple(registry())
    wanted = list(names) if names else list(cfg.stages)
    unknown = [n for n in wanted if n not in stages]
    if unknown:
        raise PipelineError(f"no stage named {unknown[0]!r}: the stages are {', '.join(stages)}")
    return tuple(s for s in stages if s in wanted)
