"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class PipelineError(RuntimeError):
    """A stage cannot run: a missing input, an unwritable folder, a failed launch. The message says what to do."""
