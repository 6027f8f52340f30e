"""The demo pipeline as a user runs it, on small data: ``dlpipe run --config conf/demo.yaml`` of every stage in its
own process (run e2e-1). One such run serves the end-to-end tests and the infer tests (its model and data)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS = 8000
DATE = "2026-11-01"


def settings(data_dir: Path, *extra: str) -> list[str]:
    sets = [f"data_dir={data_dir}", f"generate.rows={ROWS}", "generate.partitions=2", "train.epochs=4",
            "train.batch_size=128", *extra]
    return ["--config", "conf/demo.yaml", *[arg for s in sets for arg in ("--set", s)]]


def run(command: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"{command} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def run_demo(data_dir: Path) -> str:
    """Run e2e-1 into ``data_dir``; its output."""
    return run([str(BIN / "dlpipe"), "run", *settings(data_dir), "--run-id", "e2e-1", "--date", DATE]).stdout
