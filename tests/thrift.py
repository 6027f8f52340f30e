"""`dlpipe serve-sql` started as users start it, and beeline clients of it."""
from __future__ import annotations

import collections
import contextlib
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None):
    """Run ``dlpipe serve-sql *args`` on a free port until the block ends; yields (process, port, its first line).
    The server must stop cleanly on SIGTERM."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "dlpipe"), "serve-sql", *args, "--port", str(port)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              env={**os.environ, **(env or {})})
    try:
        log = []
        for line in server.stdout:  # the server says when it listens
            log.append(line)
            if "listening on" in line:
                break
        assert server.poll() is None, "".join(log[-50:])
        # read on: a server whose output nobody reads blocks once the pipe is full (a refused statement logs a trace)
        threading.Thread(target=collections.deque, args=(server.stdout, 0), daemon=True).start()
        yield server, port, log[-1]
        server.terminate()  # SIGTERM: the server stops and the process exits cleanly
        assert server.wait(timeout=120) == 0
    finally:
        if server.poll() is None:  # its JVM runs in a session of its own: killed by process id too
            family = psutil.Process(server.pid).children(recursive=True)
            os.killpg(server.pid, 9)
            for process in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            server.wait()


def beeline(port: int, *args: str, database: str = "dlpipe") -> subprocess.CompletedProcess:
    """``beeline -u jdbc:hive2://127.0.0.1:<port>/<database> *args`` with CSV output."""
    return subprocess.run([str(BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/{database}",
                           "--outputformat=csv2", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL,  # beeline -f reads stdin after the file while it is open
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
