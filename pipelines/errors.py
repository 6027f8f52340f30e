"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""
import re


class PipelineError(RuntimeError):
    """A stage cannot run: a missing input, an unwritable folder, a failed launch. The message says what to do."""



_USER_RAISED = re.compile(r"\[USER_RAISED_EXCEPTION\] (.*?)(?: SQLSTATE: \w+|$)", re.MULTILINE)
_TYPE_MISMATCH = re.compile(r"\[FAILED_READ_FILE\.PARQUET_COLUMN_DATA_TYPE_MISMATCH\] Encountered error while "
                            r"reading file (\S+?)\. .*?Parquet column \[(.*?)\]\. Expected Spark type (\w+), actual "
                            r"Parquet type (\w+)")
_UNREADABLE = re.compile(r"\[FAILED_READ_FILE\.\w+\] Encountered error while reading file (\S+?)\.\s")


def spark_failure(err: BaseException) -> str | None:
    """One line for a Spark job that failed on the data, from the wrapped executor error; None for other errors:

    - a check inside the job (``F.raise_error``: a non-finite feature value, a missing value under ``reject``),
    - a file that is not a complete Parquet file (cut short, damaged),
    - input files that disagree on a column's type (a folder of files of two schemas).
    """
    text = str(err)
    found = _USER_RAISED.search(text)
    if found:
        return found.group(1).strip()
    found = _TYPE_MISMATCH.search(text)
    if found:
        path, column, expected, actual = found.groups()
        return (f"input file {path} stores column {column} as Parquet {actual}, where the input's schema says "
                f"{expected}: the files of one input must share a schema (move that file out, or convert it)")
    found = _UNREADABLE.search(text)
    if found:
        return (f"cannot read file {found.group(1)}: it is damaged or cut short; restore it from its source or move "
                "it out of the folder")
    return metastore_failure(err)


def java_causes(err: BaseException) -> list[str]:
    """The messages of a Spark error's Java exception and of its causes, outermost first."""
    messages, throwable = [], getattr(err, "_origin", None) or getattr(err, "java_exception", None)
    while throwable is not None and len(messages) < 50:
        messages.append(f"{throwable.getClass().getName()}: {throwable.getMessage()}")
        throwable = throwable.getCause()
    return messages


def metastore_failure(err: BaseException) -> str | None:
    """One line for a metastore that cannot be opened: the database's own reason (a wrong password, no server at
    the address, embedded Derby held by another process) instead of Hive's 'Unable to instantiate
    SessionHiveMetaStoreClient'."""
    if "SessionHiveMetaStoreClient" not in str(err):
        return None
    causes = java_causes(err)
    for cause in reversed(causes):  # innermost first: the database's own words
        name, _, message = cause.partition(": ")
        if name.endswith("PSQLException") or "XSDB6" in message:
            reason = message.strip().splitlines()[0]
            hint = ("its password comes from the variable metastore.password_env names" if "password" in reason
                    else "is the server up, at the metastore.url of the config?" if "refused" in reason
                    else "one process at a time opens the embedded metastore (docs/team.md)")
            return f"cannot open the metastore: {reason} ({hint})"
    return None
