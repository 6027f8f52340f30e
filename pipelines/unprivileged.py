"""``dlpipe serve-sql`` started as root serves as another user (``sql_server.run_as``, default ``nobody``), as
``scripts/local-postgres`` runs PostgreSQL: a statement that got past every check would still not run as root.

Before it gives up root, the command grants that user, with POSIX ACLs, what the server needs and no more: to pass
through the folders above the data folder, the password file, Python and the working folder, to read the warehouse (tables written later too,
through default ACLs), to read and write the embedded metastore, the scratch and the settings folders, and to read
the password file. Then it runs itself again as that user, with a home folder of its own under ``tmp/``.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from dlpipe.pipelines.config import Config
from dlpipe.pipelines.errors import PipelineError

# under the data folder: what the server reads, and what it also writes
READS = ("warehouse",)
WRITES = ("metastore_db", "derby.log", "tmp", "conf")


def drop_root(cfg: Config, argv: list[str]) -> None:
    """As root: grant ``sql_server.run_as`` what the server needs and run ``dlpipe argv`` again as that user (this
    does not return). Anyone else: nothing."""
    if os.geteuid() != 0:
        return
    from dlpipe.pipelines.session import launched_by_spark_submit, prepare_data_dir

    user = cfg.sql_server.run_as
    if launched_by_spark_submit():
        raise PipelineError("serve-sql under spark-submit started as root: start it as another user, or with "
                            "`dlpipe serve-sql`, which serves as sql_server.run_as")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PipelineError(f"sql_server.run_as {user}: no such user on this machine: create one "
                            f"(useradd --system {user}) or name another") from None
    if entry.pw_uid == 0:
        raise PipelineError(f"sql_server.run_as {user} is root: name an unprivileged user")
    if shutil.which("setfacl") is None:
        raise PipelineError("setfacl is missing, which serve-sql started as root needs to give sql_server.run_as "
                            "its data folder: apt-get install acl")
    root = prepare_data_dir(cfg)
    # what the server opens, which may lie below folders that only root passes (a Python installed under /root)
    passable = [root, Path(os.path.realpath(sys.executable)), Path(sys.prefix).resolve(), Path.cwd()]
    if cfg.sql_server.password_file:
        passable.append(Path(cfg.sql_server.password_file).resolve())
    for place in passable:
        for parent in reversed(place.parents):
            if not parent.stat().st_mode & 0o001:
                setfacl(["-m", f"u:{user}:x"], parent)
    setfacl(["-m", f"u:{user}:rwx"], root)  # derby.log, the metastore when it is first made
    for name, rights in [(n, "rX") for n in READS] + [(n, "rwX") for n in WRITES]:
        if (root / name).exists():
            setfacl(["-R", "-m", f"u:{user}:{rights}"], root / name)
            if (root / name).is_dir():
                setfacl(["-R", "-d", "-m", f"u:{user}:{rights}"], root / name, folders_only=True)
    if cfg.sql_server.password_file:
        setfacl(["-m", f"u:{user}:r"], Path(cfg.sql_server.password_file).resolve())
    home = root / "tmp" / f"serve-sql-{user}"
    home.mkdir(exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    sys.stdout.flush()
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    # scratch in its own data folder, whatever this process inherited (a parent dlpipe process sets both for its own)
    scratch = str(root / "tmp")
    env = {**os.environ, "HOME": str(home), "USER": user, "LOGNAME": user, "TMPDIR": scratch,
           "SPARK_LOCAL_DIRS": scratch}
    os.execve(sys.executable, [sys.executable, sys.argv[0], *argv], env)  # the same command line as before


def setfacl(args: list[str], path: Path, folders_only: bool = False) -> None:
    """``setfacl args path``; default ACLs (``-d``) are set on folders only."""
    targets = [str(path)]
    if folders_only:
        targets = [dirpath for dirpath, _, _ in os.walk(path)]
        args = [a for a in args if a != "-R"]
    out = subprocess.run(["setfacl", *args, *targets], capture_output=True, text=True)
    if out.returncode != 0:
        raise PipelineError(f"cannot give sql_server.run_as access to {path}: {out.stderr.strip()}")


def readable_by_others(path: Path, server_user: str | None) -> bool:
    """True if ``path`` can be read by anyone but its owner (and ``server_user``, the server's, through an ACL)."""
    mode = path.stat().st_mode
    if not mode & 0o077:
        return False
    if shutil.which("getfacl") is None:
        return True
    out = subprocess.run(["getfacl", "-c", "-p", str(path)], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        kind, _, rest = line.partition(":")
        who, _, perms = rest.partition(":")
        perms = perms.split("#")[0].strip()
        if kind in ("group", "other") and who == "" and "r" in perms:
            return True
        if kind in ("user", "group") and who and who != server_user and "r" in perms:
            return True
    return out.returncode != 0
