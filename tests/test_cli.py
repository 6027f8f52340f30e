"""The dlpipe command line on bad input: one line naming the problem, a non-zero exit, nothing half-written."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DLPIPE = str(Path(sys.executable).parent / "dlpipe")


def dlpipe(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([DLPIPE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_help_lists_every_stage():
    out = dlpipe("--help")
    assert out.returncode == 0
    for command in ("generate", "featurize", "train", "infer", "evaluate", "run", "sql", "serve-sql"):
        assert command in out.stdout
    sub = dlpipe("train", "--help")
    assert "--set SECTION.KEY=VALUE" in sub.stdout and "--config" in sub.stdout


def test_missing_config_file(tmp_path):
    out = dlpipe("featurize", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"dlpipe featurize: config error: config file {tmp_path / 'missing.yaml'} not found "
        "(pass --config PATH to a pipeline YAML such as conf/demo.yaml)"
    )


def test_yaml_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n   batch_size: 4\n")
    out = dlpipe("train", "--config", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"dlpipe train: config error: {bad}: YAML syntax error at line 3, column 14:")
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_override_value():
    out = dlpipe("train", "--set", "train.num_proc=0")
    assert out.returncode == 2
    assert out.stderr.strip() == "dlpipe train: config error: --set: train.num_proc: must be a positive integer or auto, got 0"


def test_unwritable_data_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = dlpipe("featurize", "--set", f"data_dir={blocker}/var")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"dlpipe featurize: error: data folder {blocker}/var is not writable (Not a directory): "
        "set data_dir to a folder you can write"
    )


@pytest.mark.slow
def test_missing_input_path_writes_nothing(tmp_path):
    data = tmp_path / "var"
    out = dlpipe("featurize", "--set", f"data_dir={data}", "--set", "featurize.input={path: /no/such/table, format: parquet}")
    assert out.returncode == 1
    assert last_line(out.stderr) == (
        "dlpipe featurize: error: input path /no/such/table does not exist: fix the input path in the config"
    )
    tables = {p.relative_to(data / "warehouse").parts[:2] for p in (data / "warehouse").rglob("*.parquet")}
    assert tables == {("dlpipe.db", "runs")}  # only the record of the failed stage
    assert not any((data / "artifacts").iterdir())


def test_a_date_that_is_not_a_date():
    out = dlpipe("run", "--date", "2026-13-01")
    assert out.returncode == 2
    assert last_line(out.stderr) == ("dlpipe run: error: argument --date: '2026-13-01' is not a date: use YYYY-MM-DD, "
                                     "e.g. 2026-11-27")


def test_a_stage_that_does_not_exist():
    out = dlpipe("run", "--stages", "featurize,trian")
    assert out.returncode == 2
    assert last_line(out.stderr) == ("dlpipe run: no stage named 'trian': the stages are generate, featurize, train, "
                                     "infer, evaluate")


def test_a_run_id_that_could_break_sql():
    out = dlpipe("report", "x' OR '1'='1")
    assert out.returncode == 2
    assert last_line(out.stderr).startswith("dlpipe report: run id \"x' OR '1'='1\" is not valid")
