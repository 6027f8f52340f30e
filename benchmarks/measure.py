"""Timing and peak memory of this process and everything it starts (the Spark JVM, Python workers, Horovod ranks)."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

import psutil


class PeakMemory:
    """Samples the resident memory of this process tree every ``interval`` seconds; ``peak_mb`` is the largest sum.
    Processes whose command line contains ``exclude`` (for example Spark's executor class) are left out."""

    def __init__(self, interval: float = 0.25, exclude: str | None = None):
        self.interval = interval
        self.exclude = exclude
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    if self.exclude and self.exclude in " ".join(proc.cmdline()):
                        continue
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
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
