"""Who may log in to ``dlpipe serve-sql``: users and password hashes in a file readable by its owner only
(``sql_server.password_file``), checked by the Thrift server at each login (``jvm/src/dlpipe/sql/PasswordFile.java``).

Add or change a user (the password is asked for, or read from stdin)::

    python -m dlpipe.pipelines.sql_auth var/sql-users ana

A server that listens on an address other than loopback refuses to start without such a file.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from dlpipe.pipelines import unprivileged
from dlpipe.pipelines.errors import PipelineError

PROVIDER = "dlpipe.sql.PasswordFile"
FILE_PROPERTY = "dlpipe.sql.passwordFile"
ITERATIONS = 200_000
USER = re.compile(r"^[A-Za-z0-9_.@-]+$")


def hashed(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def add_user(path: Path, user: str, password: str) -> None:
    """Set ``user``'s password in the file (created owner-only), replacing an earlier one."""
    if not USER.match(user):
        raise PipelineError(f"user name {user!r}: letters, digits and . _ @ - only")
    if len(password) < 8:
        raise PipelineError("the password needs 8 characters or more")
    lines = [line for line in (path.read_text().splitlines() if path.exists() else [])
             if line.split(":", 1)[0] != user]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{line}\n" for line in [*lines, f"{user}:{hashed(password)}"]))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


# Where the Thrift server may be told to listen, besides sql_server.host: it reads the environment first, then its
# Hive settings, which Spark fills from spark.hadoop.hive.* and spark.hive.*.
BIND_HOST_ENV = "HIVE_SERVER2_THRIFT_BIND_HOST"
BIND_HOST_SETTINGS = ("spark.hadoop.hive.server2.thrift.bind.host", "spark.hive.server2.thrift.bind.host")


def bind_host(cfg) -> tuple[str, str]:
    """(the address the Thrift server will bind, where that was set), resolved once from every source the server
    reads, in its order."""
    if os.environ.get(BIND_HOST_ENV):
        return os.environ[BIND_HOST_ENV], f"the environment variable {BIND_HOST_ENV}"
    for key in BIND_HOST_SETTINGS:
        if cfg.spark.conf.get(key):
            return cfg.spark.conf[key], f"spark.conf {key}"
    return cfg.sql_server.host, "sql_server.host"


def check(host: str, password_file: str | None, source: str = "sql_server.host",
          server_user: str | None = None) -> Path | None:
    """The password file the server must use (None: loopback without logins); a clear error if the server would
    be open to the network without one, or the file is not its owner's alone (and ``server_user``'s, which serves
    when serve-sql was started as root)."""
    if password_file is None:
        if not is_loopback(host):
            raise PipelineError(f"{source} {host} is reachable from other machines: set "
                                "sql_server.password_file so that clients log in (docs/team.md), or serve on 127.0.0.1")
        return None
    path = Path(password_file).expanduser().resolve()
    if not path.is_file():
        raise PipelineError(f"sql_server.password_file {path} does not exist: add a user with "
                            f"`python -m dlpipe.pipelines.sql_auth {path} NAME`")
    if unprivileged.readable_by_others(path, server_user):
        raise PipelineError(f"sql_server.password_file {path} is readable by others: chmod 600 {path}")
    if not any(":pbkdf2_sha256$" in line for line in path.read_text().splitlines()):
        raise PipelineError(f"sql_server.password_file {path} holds no user: add one with "
                            f"`python -m dlpipe.pipelines.sql_auth {path} NAME`")
    return path


def settings(cfg) -> dict[str, str]:
    """The Spark settings of the Thrift server: where it listens, and logins if there is a password file. They must
    be in the application's settings from its start: the server's configuration is a copy made when the session
    is."""
    where = {"spark.hadoop.hive.server2.thrift.bind.host": bind_host(cfg)[0],
             "spark.hadoop.hive.server2.thrift.port": str(cfg.sql_server.port)}
    if cfg.sql_server.password_file is None:
        return where
    return {**where, "spark.hadoop.hive.server2.authentication": "CUSTOM",
            "spark.hadoop.hive.server2.custom.authentication.class": PROVIDER}


def require_logins(spark: SparkSession, path: Path, attempts: int, lockout_s: int) -> None:
    """Point the Thrift server started next in this application at the logins in ``path``, locking a user out for
    ``lockout_s`` after ``attempts`` failed logins in a row (a client address after four times as many). Hive builds
    its login checker from a configuration of its own, which reads Java system properties."""
    system = spark.sparkContext._jvm.java.lang.System
    system.setProperty("hive.server2.custom.authentication.class", PROVIDER)
    system.setProperty(FILE_PROPERTY, str(path))
    system.setProperty("dlpipe.sql.loginAttempts", str(attempts))
    system.setProperty("dlpipe.sql.lockoutSeconds", str(lockout_s))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m dlpipe.pipelines.sql_auth PASSWORD_FILE USER   (the password: asked, or stdin)",
              file=sys.stderr)
        return 2
    path, user = Path(argv[0]), argv[1]
    password = getpass.getpass(f"password for {user}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        add_user(path, user, password)
    except PipelineError as err:
        print(f"sql_auth: {err}", file=sys.stderr)
        return 1
    print(f"sql_auth: {user} can log in to `dlpipe serve-sql` with sql_server.password_file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
