import logging

from dlpipe.pipelines import termination


def _py4j_record(message: str) -> logging.LogRecord:
    return logging.LogRecord("root", logging.ERROR, "/site-packages/py4j/java_gateway.py", 1059, message, None, None)


def test_a_py4j_call_broken_by_the_sigterm_logs_nothing_and_any_other_error_is_printed(monkeypatch):
    monkeypatch.setattr(termination, "SIGNAL_GRACE_S", 0.05)
    monkeypatch.setattr(termination, "_received", type(termination._received)())
    broken = _py4j_record("Exception while sending command.")
    assert termination._py4j_error_of_the_signal(broken)  # no signal: printed, after the grace
    termination._received.set()
    assert not termination._py4j_error_of_the_signal(broken)
    assert termination._py4j_error_of_the_signal(_py4j_record("An error occurred while calling o42.collect"))
