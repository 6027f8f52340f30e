"""Running ``dlpipe`` as users do, in its own process, on the tiny demo data set of these tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROWS = 3000


def settings(data_dir: Path, *extra: str) -> list[str]:
    """``--config conf/demo.yaml`` on ROWS generated rows with a small network, plus ``extra`` overrides."""
    sets = [f"data_dir={data_dir}", f"generate.rows={ROWS}", "generate.partitions=2", "train.batch_size=64",
            "train.hidden_units=[16, 8]", *extra]
    return ["--config", "conf/demo.yaml", *[arg for s in sets for arg in ("--set", s)]]


def dlpipe(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dlpipe"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, f"{out.args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out
