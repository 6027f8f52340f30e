"""A run's log file: everything the command prints, to the console as before and to ``runs/<run id>/run.log``.

The copy is made at the file-descriptor level, so it holds what Spark's JVM, its Python workers and the Horovod
ranks write as well as what dlpipe prints (they inherit the driver's stdout and stderr). The log file leaves out
Spark's console progress bar, which redraws one line with carriage returns; the console keeps it.
"""
from __future__ import annotations

import array
import fcntl
import os
import re
import sys
import termios
import threading
import time
from pathlib import Path

_PROGRESS = re.compile(rb"^\[Stage \d+:")


class _Relay(threading.Thread):
    """Copies one pipe to the console (as is) and to the log file (line by line, progress bar left out)."""

    def __init__(self, read_fd: int, console_fd: int, log, lock: threading.Lock):
        super().__init__(daemon=True)
        self.read_fd, self.console_fd, self.log, self.lock = read_fd, console_fd, log, lock
        self.pending = b""
        self.busy = False

    def run(self) -> None:
        while True:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                break
            self.busy = True
            try:
                os.write(self.console_fd, chunk)
                self._to_log(chunk)
            except OSError:
                pass
            finally:
                self.busy = False
        self._to_log(b"\n" if self.pending else b"")

    def _to_log(self, chunk: bytes) -> None:
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        kept = []
        for line in lines:
            line = line.rsplit(b"\r", 1)[-1]  # what a redrawn line shows last
            if line and not _PROGRESS.match(line):
                kept.append(line + b"\n")
        if kept:
            with self.lock:
                self.log.write(b"".join(kept))

    def unread(self) -> int:
        buffer = array.array("i", [0])
        fcntl.ioctl(self.read_fd, termios.FIONREAD, buffer)
        return buffer[0]


class TeeOutput:
    """``with TeeOutput(path):`` everything written to fd 1 and 2, by this process or its children, also goes to
    ``path`` (appended). On exit this process prints to the console directly again; children started inside (the
    Spark JVM) keep writing through the copy until they end."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.relays: list[_Relay] = []
        self.saved: dict[int, int] = {}

    def __enter__(self) -> "TeeOutput":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.path, "ab", buffering=0)
        except OSError:  # an unusable data folder: the command itself says so; there is just no log file
            return self
        lock = threading.Lock()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            console = os.dup(fd)
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            relay = _Relay(read_fd, console, log, lock)
            relay.start()
            self.relays.append(relay)
            self.saved[fd] = console
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, console in self.saved.items():
            os.dup2(console, fd)
        deadline = time.time() + 2.0  # let what was written before now reach the console and the file
        while time.time() < deadline and any(r.busy or r.unread() for r in self.relays):
            time.sleep(0.01)
