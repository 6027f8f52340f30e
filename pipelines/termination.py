"""A scheduler's SIGTERM (Airflow stopping a task sends it to the whole process group), turned into a clean failure.

An exception raised inside a blocking Py4J call breaks the driver's connection to the JVM, and a JVM that gets the
signal itself shuts Spark down under the running stage: either way the stage could not even be recorded as failed.
So the JVM runs in a session of its own (``pipelines.session``: the group's signal never reaches it, nor the Python
workers and Horovod ranks it starts), and the driver's handler only sets a flag and cancels Spark's jobs from a
fresh thread. The stage's job then fails like any other, the runner records ``terminated by SIGTERM`` for it, Spark
stops, and the command exits with 143 (128 + SIGTERM). A rerun with the same run id resumes where it stopped.
"""
from __future__ import annotations

import logging
import signal
import socket
import sys
import threading

from dlpipe.pipelines.errors import PipelineError

EXIT_CODE = 128 + signal.SIGTERM
MESSAGE = "terminated by SIGTERM"

_received = threading.Event()


class Terminated(PipelineError):
    """The command was asked to stop."""


def install() -> None:
    """Handle SIGTERM from now on. Python runs a signal handler in the main thread only, and only once that thread
    runs Python again, which may be minutes away while it waits on a Horovod launch; so the handler itself does
    nothing, and the signal, written to a wake-up socket, is acted on at once by a thread that watches it."""
    signal.signal(signal.SIGTERM, _ignore)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader, writer), name="dlpipe-signals", daemon=True).start()
    threading.excepthook = _quiet_when_terminated(threading.excepthook)
    logging.getLogger().addFilter(_py4j_error_of_the_signal)


# how long a failed Py4J call waits for the signal watcher: the signal can break a call before the watcher runs
SIGNAL_GRACE_S = 2.0


def _quiet_when_terminated(print_exception):
    """After a SIGTERM, a library's thread that dies of the cancelled job (Horovod's Spark thread does) dies
    without printing its traceback: the one line the command prints says what happened. The signal also reaches the
    processes whose output Horovod's threads copy, and one of those can die of its closed pipe before the signal
    watcher has run: a thread's error waits for the signal as long as a Py4J error does."""
    def hook(args) -> None:
        if not _received.wait(SIGNAL_GRACE_S):
            print_exception(args)
    return hook


def _py4j_error_of_the_signal(record: logging.LogRecord) -> bool:
    """Py4J logs a broken call's traceback on the root logger (``Exception while sending command.``); a SIGTERM
    breaks calls in flight, and its one line says what happened, so that traceback is dropped then. Any other Py4J
    error is printed, a moment late."""
    if record.getMessage().startswith("Exception while sending command") and record.pathname.endswith(
            "java_gateway.py"):
        return not _received.wait(SIGNAL_GRACE_S)
    return True


def _ignore(signum, frame) -> None:
    """The Python-level handler: it only keeps the default action (exit at once) away; see ``_watch``."""


def requested() -> bool:
    return _received.is_set()


def check() -> None:
    """Raise ``Terminated`` once a SIGTERM came (between stages, where no Spark job is running to cancel)."""
    if requested():
        raise Terminated(MESSAGE)


def _watch(reader: socket.socket, writer: socket.socket) -> None:
    """Wait for signals on the wake-up socket (``writer`` is held here so that it stays open)."""
    while True:
        data = reader.recv(64)
        if not data:
            return
        if signal.SIGTERM in data and not requested():
            _received.set()
            print(f"dlpipe: {MESSAGE}: cancelling the running Spark jobs", file=sys.stderr, flush=True)
            _cancel_jobs()


def _cancel_jobs() -> None:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is not None:
        try:
            context.cancelAllJobs()
        except Exception:  # noqa: BLE001 - Spark is stopping anyway
            pass
