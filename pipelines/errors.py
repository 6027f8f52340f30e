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
    return None
