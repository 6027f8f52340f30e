"""The metastore that names dlpipe's tables.

- Embedded Derby under the data folder (the one-machine default): one process at a time may open it. A second one
  is refused before its JVM starts, naming the process that holds it (``check_derby_free``).
- A shared PostgreSQL database (the config's ``metastore`` section): every process, ``dlpipe serve-sql`` and a
  cluster's driver use it at once. Spark's built-in Hive client reaches it through the PostgreSQL JDBC driver
  (``make install`` puts the jar beside Spark's), and creates the metastore schema on first use. The password comes
  from an environment variable and goes to Spark through Py4J only: never a file, a command line or a log.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError

SHARED_SETUP = "docs/team.md"
EXITING_S = 15  # how long a holder that no dlpipe command runs may take to let go (the JVM of one that ended)
URL = "spark.hadoop.javax.jdo.option.ConnectionURL"


def derby_folder(cfg: Config) -> Path:
    return cfg.data_path / "metastore_db"


def settings(cfg: Config) -> dict[str, str]:
    """Spark's settings for the metastore: Derby's folder, or PostgreSQL's URL, user and password."""
    shared = cfg.metastore
    if shared is None:
        return {URL: f"jdbc:derby:;databaseName={derby_folder(cfg)};create=true"}
    return {
        URL: shared.url,
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": shared.user,
        "spark.hadoop.javax.jdo.option.ConnectionPassword": password(cfg),
        # The schema is created table by table as Hive first needs each. Its foreign keys are not: adding one waits
        # for the lock of a transaction that the same process holds open, forever (PostgreSQL).
        "spark.hadoop.datanucleus.schema.autoCreateAll": "false",
        "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
        "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
        "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
    }


def password(cfg: Config) -> str:
    name = cfg.metastore.password_env
    value = os.environ.get(name)
    if not value:
        raise PipelineError(f"metastore.password_env: the environment variable {name} is not set: export it with "
                            f"the password of metastore user {cfg.metastore.user}")
    return value


def check_derby_free(cfg: Config) -> None:
    """Fail at once, in one line, when another process has the embedded Derby metastore open: Derby would refuse
    this one after half a minute and thousands of lines of Hive traces."""
    if cfg.metastore is not None or {URL, "spark.hadoop.hive.metastore.uris"} & set(cfg.spark.conf):
        return  # shared, or another metastore that spark.conf names
    waited_until = time.monotonic() + EXITING_S
    while True:
        holder = derby_holder(derby_folder(cfg))
        if holder is None or holder in _own_processes():
            return
        command = _parent(holder) if _dlpipe_command(_parent(holder)) else None  # the dlpipe command of a JVM
        if command or time.monotonic() > waited_until:
            break
        time.sleep(0.2)  # the JVM of a command that has just ended lets go within seconds
    owner = command or holder
    raise PipelineError(
        f"the embedded metastore {derby_folder(cfg)} is open in process {owner} ({_describe(owner)}), and it "
        f"admits one process at a time: run this when that one has ended, query through its `dlpipe serve-sql` if "
        f"it is one, or set up a shared metastore ({SHARED_SETUP})")


def derby_holder(folder: Path) -> int | None:
    """The process that has the Derby database in ``folder`` booted, if any: Derby holds a POSIX lock on its
    ``dbex.lck`` file while it does. 0 when the lock is held by a process that cannot be named."""
    lock = folder / "dbex.lck"
    try:
        st = lock.stat()
    except FileNotFoundError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as locks:  # Linux: who holds it, without taking it
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[5] == device and fields[4].isdigit():
                    return int(fields[4])
        return None
    except FileNotFoundError:
        pass
    with lock.open("rb+") as handle:  # elsewhere: held if it cannot be taken
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return None


def _own_processes() -> set[int]:
    """This process and its JVM (a session already running here holds the metastore itself)."""
    from pyspark import SparkContext

    own = {os.getpid()}
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None) if gateway is not None else None
    if process is not None:
        own.add(process.pid)
    return own


def _command(pid: int | None) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1] if pid else []
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _dlpipe_command(pid: int | None) -> bool:
    return any(Path(word).name == "dlpipe" for word in _command(pid)[:2])


def _describe(pid: int) -> str:
    """What the process is, as its command line without the interpreter."""
    words = _command(pid)
    if words and Path(words[0]).name.startswith("python") and len(words) > 1:
        words = words[1:]
    if words:
        words[0] = Path(words[0]).name
    text = " ".join(words) or "unknown command"
    return text if len(text) <= 120 else text[:117] + "..."
