"""A real Spark standalone cluster on 127.0.0.1 for tests: one master and N workers started with ``spark-class``
from the installed pyspark distribution (the venv's SPARK_HOME, which has the Delta jars), each in its own process
group, stopped by process id when the block ends. Work and log folders stay in the test's temporary folder."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def standalone_cluster(folder: Path, workers: int = 2, cores: int = 1, memory: str = "3g", timeout: float = 90):
    """Yield the master URL (``spark://127.0.0.1:<port>``) once all workers have registered."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_WORKER_DIR": str(folder / "work"), "SPARK_LOG_DIR": str(folder / "logs"),
           "SPARK_NO_DAEMONIZE": "1"}
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    commands = [[spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui_port)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
                  "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(folder / "work"), master_url]
                 for _ in range(workers)]
    processes: list[subprocess.Popen] = []
    try:
        for i, command in enumerate(commands):
            log = open(folder / f"{'master' if i == 0 else f'worker{i}'}.log", "w")
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            log.close()
        deadline = time.time() + timeout
        while _alive_workers(ui_port) < workers:
            dead = [p.args[1] for p in processes if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = "\n".join((folder / name).read_text()[-2000:] for name in sorted(os.listdir(folder))
                                 if name.endswith(".log"))
                raise RuntimeError(f"standalone cluster did not start ({'exited: ' + ', '.join(dead) if dead else 'timeout'}):\n{logs}")
            time.sleep(0.5)
        yield master_url
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
