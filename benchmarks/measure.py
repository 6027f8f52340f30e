"""Timing and peak memory of this process and everything it starts (the Spark JVM, Python workers, Horovod ranks)."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil


class PeakMemory:
    """Samples the resident memory of this process tree every ``interval`` seconds; ``peak_mb`` is the largest sum.
    Processes whose command line contains ``exclude`` (for example Spark's executor class) are left out. With
    ``role`` (process, root process -> a name, or None to leave it out), ``peak_by_role`` has the largest sum of
    each role's processes as well."""

    def __init__(self, interval: float = 0.25, exclude: str | None = None,
                 role: Callable[[psutil.Process, psutil.Process], str | None] | None = None):
        self.interval = interval
        self.exclude = exclude
        self.role = role or (lambda proc, root: "all")
        self.peak_mb = 0.0
        self.peak_by_role: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process(os.getpid())
        while not self._stop.is_set():
            totals: dict[str, float] = {}
            for proc in [root, *root.children(recursive=True)]:
                try:
                    if self.exclude and self.exclude in " ".join(proc.cmdline()):
                        continue
                    name = self.role(proc, root)
                    if name is not None:
                        totals[name] = totals.get(name, 0.0) + proc.memory_info().rss / 2**20
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, sum(totals.values()))
            for name, mb in totals.items():
                self.peak_by_role[name] = max(self.peak_by_role.get(name, 0.0), mb)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Measurement:
    name: str
    rows: int
    seconds: float
    peak_mem_mb: float
    baseline: str | None = None
    baseline_seconds: float | None = None

    def to_json(self) -> str:
        record = {
            "name": self.name,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows / self.seconds, 1) if self.seconds > 0 else None,
            "peak_mem_mb": round(self.peak_mem_mb, 1),
        }
        if self.baseline is not None and self.baseline_seconds:
            record["baseline"] = self.baseline
            record["ratio"] = round(self.baseline_seconds / self.seconds, 3)
        return json.dumps(record)


def emit(measurement: Measurement) -> None:
    print(measurement.to_json(), flush=True)


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started
