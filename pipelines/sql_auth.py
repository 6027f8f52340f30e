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


def check(host: str, password_file: str | None) -> Path | None:
    """The password file the server must use (None: loopback without logins); a clear error if the server would
    be open to the network without one, or the file is not its owner's alone."""
    if password_file is None:
        if not is_loopback(host):
            raise PipelineError(f"sql_server.host {host} is reachable from other machines: set "
                                "sql_server.password_file so that clients log in (docs/team.md), or serve on 127.0.0.1")
        return None
    path = Path(password_file).expanduser().resolve()
    if not path.is_file():
        raise PipelineError(f"sql_server.password_file {path} does not exist: add a user with "
                            f"`python -m dlpipe.pipelines.sql_auth {path} NAME`")
    if path.stat().st_mode & 0o077:
        raise PipelineError(f"sql_server.password_file {path} is readable by others: chmod 600 {path}")
    if not any(":pbkdf2_sha256$" in line for line in path.read_text().splitlines()):
        raise PipelineError(f"sql_server.password_file {path} holds no user: add one with "
                            f"`python -m dlpipe.pipelines.sql_auth {path} NAME`")
    return path


def settings(password_file: str | None) -> dict[str, str]:
    """The Spark settings of a Thrift server that asks for logins (none without a password file). They must be in
    the application's settings from its start: the server's configuration is a copy made when the session is."""
    if password_file is None:
        return {}
    return {"spark.hadoop.hive.server2.authentication": "CUSTOM",
            "spark.hadoop.hive.server2.custom.authentication.class": PROVIDER}


def require_logins(spark: SparkSession, path: Path) -> None:
    """Point the Thrift server started next in this application at the logins in ``path``. Hive builds its login
    checker from a configuration of its own, which reads Java system properties."""
    system = spark.sparkContext._jvm.java.lang.System
    system.setProperty("hive.server2.custom.authentication.class", PROVIDER)
    system.setProperty(FILE_PROPERTY, str(path))


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
