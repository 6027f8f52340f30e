"""serve-sql's logins and address, without a server: where it would listen is resolved before Spark starts, and the
login checker (jvm/src/dlpipe/sql/PasswordFile.java) is called in this process's JVM."""
from __future__ import annotations

import os
import statistics
import subprocess
import time

import pytest
from py4j.protocol import Py4JJavaError

from dlpipe.pipelines import sql_auth
from tests.conftest import BIN, REPO


@pytest.mark.parametrize("setting, env, source", [
    (["--set", "sql_server.host=0.0.0.0"], {}, "sql_server.host"),
    (['--set', 'spark.conf={"spark.hadoop.hive.server2.thrift.bind.host": "0.0.0.0"}'], {},
     "spark.conf spark.hadoop.hive.server2.thrift.bind.host"),
    ([], {"HIVE_SERVER2_THRIFT_BIND_HOST": "0.0.0.0"}, "the environment variable HIVE_SERVER2_THRIFT_BIND_HOST"),
])
def test_an_address_other_machines_reach_needs_logins_wherever_it_is_set(tmp_path, setting, env, source):
    out = subprocess.run([str(BIN / "dlpipe"), "serve-sql", "--set", f"data_dir={tmp_path / 'var'}", *setting],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 1 and out.stderr.splitlines() == [
        f"dlpipe serve-sql: error: {source} 0.0.0.0 is reachable from other machines: set "
        "sql_server.password_file so that clients log in (docs/team.md), or serve on 127.0.0.1"], out.stderr
    assert not (tmp_path / "var").exists()  # refused before Spark started


class Logins:
    """The login checker (PasswordFile) of a file with ana and bob, locking out after 3 failures for 1 s, called as
    the Thrift server calls it, with the client's address set for the calling thread (ClientAddress)."""

    def __init__(self, jvm):
        self.checker = jvm.dlpipe.sql.PasswordFile()
        self.sessions = jvm.org.apache.hive.service.cli.session.SessionManager

    def __call__(self, user: str, password: str, address: str = "127.0.0.1") -> str:
        self.sessions.setIpAddress(address)  # py4j runs this caller's calls in one JVM thread
        try:
            self.checker.Authenticate(user, password)
            return "ok"
        except Py4JJavaError as err:
            return err.java_exception.getMessage()
        finally:
            self.sessions.clearIpAddress()


@pytest.fixture
def login(spark, tmp_path):
    users = tmp_path / "sql-users"
    for user in ("ana", "bob"):
        sql_auth.add_user(users, user, "correct-horse")
    system = spark.sparkContext._jvm.java.lang.System
    settings = {"dlpipe.sql.passwordFile": str(users), "dlpipe.sql.loginAttempts": "3",
                "dlpipe.sql.lockoutSeconds": "1"}
    for key, value in settings.items():
        system.setProperty(key, value)
    yield Logins(spark.sparkContext._jvm)
    for key in settings:
        system.clearProperty(key)


def test_repeated_wrong_logins_lock_the_user_out_for_a_while(login):
    for _ in range(3):
        assert login("bob", "wrong-horse") == "wrong user or password"
    assert login("bob", "correct-horse").startswith("too many failed logins: try again in ")
    assert login("ana", "correct-horse") == "ok"  # another user is not locked out
    time.sleep(1.2)
    assert login("bob", "correct-horse") == "ok"
    assert login("bob", "wrong-horse") == "wrong user or password"  # a success starts the count again


def test_repeated_wrong_logins_from_one_address_lock_it_out(login):
    """Four times a user's attempts, from one address whatever the user names: that address is refused, the right
    password too, while the same user from another address gets in."""
    for attempt in range(12):
        assert login(f"guess-{attempt}", "wrong-horse", "10.1.2.3") == "wrong user or password"
    assert login("ana", "correct-horse", "10.1.2.3").startswith("too many failed logins: try again in ")
    assert login("ana", "correct-horse", "10.9.9.9") == "ok"
    time.sleep(1.2)
    assert login("ana", "correct-horse", "10.1.2.3") == "ok"


def test_a_wrong_user_takes_as_long_as_a_wrong_password(login):
    """The hashing is the same for a user who is not in the file: its time does not tell who exists."""
    seconds = {"ana": [], "nobody-here": []}
    for attempt in range(6):
        for user in seconds:  # interleaved: the machine's load falls on both alike
            started = time.perf_counter()
            refused = login(user, f"wrong-{attempt}", f"10.0.0.{attempt}")  # locked out after 3: hashed all the same
            seconds[user].append(time.perf_counter() - started)
            assert refused == "wrong user or password" or refused.startswith("too many failed logins"), refused
    ratio = statistics.median(seconds["nobody-here"]) / statistics.median(seconds["ana"])
    assert 0.7 < ratio < 1.4, seconds
