"""A local PostgreSQL server for the shared-metastore tests, started and stopped with scripts/local-postgres (the
script users run) on a free port."""
from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "local-postgres"


@dataclass(frozen=True)
class Server:
    folder: Path
    url: str
    pid: int

    @property
    def password(self) -> str:
        return (self.folder / "password").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        """What a dlpipe process needs in its environment to use this metastore."""
        return {"DLPIPE_METASTORE_PASSWORD": self.password}

    def setting(self) -> str:
        """The ``--set`` value that points a config at this metastore."""
        return f'metastore={{url: "{self.url}"}}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> Server:
    out = subprocess.run([str(SCRIPT), "start", str(folder), str(free_port())], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.search(r"\(process (\d+)\).*url: \"(jdbc:postgresql://[^\"]+)\"", out.stdout, re.DOTALL)
    assert found, out.stdout
    return Server(folder=folder, url=found.group(2), pid=int(found.group(1)))


def stop(server: Server) -> None:
    out = subprocess.run([str(SCRIPT), "stop", str(server.folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"stopped process {server.pid}" in out.stdout, out.stdout + out.stderr
