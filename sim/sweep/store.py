"""A sweep's results: one hive-partitioned Parquet dataset per table, partitioned by point.

    SWEEP_DIR/sweep.json                           the sweep: its file, parameters and points
    SWEEP_DIR/summary/point=KEY/part-0.parquet     one row per deployment of the point (a failed point: one row)
    SWEEP_DIR/turns/point=KEY/part-0.parquet       the point's tables, the swept parameters as columns
    SWEEP_DIR/steps/point=KEY/part-0.parquet
    SWEEP_DIR/gpus/point=KEY/part-0.parquet
    SWEEP_DIR/runs/point=KEY/run.json              its run.json (and timing.json)

pandas (`pd.read_parquet(DIR / "turns")`), polars (`pl.read_parquet(DIR + "/turns/*/*.parquet")`) and
DuckDB (`read_parquet('DIR/turns/*/*.parquet', hive_partitioning = true)`) each open a table as one.

A point is written whole or not at all: its files are written into SWEEP_DIR/.staging/KEY, a `complete`
mark is written there last, and only then are they moved into the dataset, its summary last. A point is
done when its summary holds status `ok`. A sweep that starts finishes moving every staged point marked
complete (one stopped mid-move) and removes the rest, so a killed sweep loses no completed point and
leaves no half-written one; SIGINT and SIGTERM wait while a point is moved.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sim import __version__

TABLES = ("turns", "steps", "gpus", "faults")
PART = "part-0.parquet"
STAGING = ".staging"
COMPLETE = "complete"


class SweepFolderError(ValueError):
    """A folder a sweep cannot write to or read from, and why."""


def folder_problem(sweep_dir: Path) -> str | None:
    """Why a sweep could not write into `sweep_dir`, or None: an empty or missing folder, or a sweep's."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        return "it exists and is not a folder"
    if sweep_dir.is_dir() and any(sweep_dir.iterdir()) and not (sweep_dir / "sweep.json").is_file():
        return "it holds files that are not a simrun sweep (no sweep.json)"
    return None


def partition(sweep_dir: Path, table: str, key: str) -> Path:
    return sweep_dir / table / f"point={key}"


def open_sweep(sweep_dir: Path, description: dict) -> None:
    """Make the folder ready: finish moving points staged complete, remove half-staged ones and the points
    of an earlier sweep that this one does not have, write sweep.json."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    staging = sweep_dir / STAGING
    if staging.is_dir():
        for stage in staging.iterdir():
            if (stage / COMPLETE).is_file():
                _move(sweep_dir, stage)
            else:
                shutil.rmtree(stage, ignore_errors=True)
    keys = {p["key"] for p in description["points"]}
    for table in (*TABLES, "runs", "summary"):
        folder = sweep_dir / table
        for part in folder.iterdir() if folder.is_dir() else ():
            if part.name.removeprefix("point=") not in keys:
                shutil.rmtree(part, ignore_errors=True)
    _write_text(sweep_dir / "sweep.json", json.dumps(description, indent=2) + "\n")


def done_keys(sweep_dir: Path) -> set[str]:
    """Points whose summary says they ran to the end."""
    done = set()
    folder = sweep_dir / "summary"
    for part in folder.iterdir() if folder.is_dir() else ():
        file = part / PART
        if file.is_file() and pq.read_table(file, columns=["status"])["status"][0].as_py() == "ok":
            done.add(part.name.removeprefix("point="))
    return done


def commit(sweep_dir: Path, key: str, tables: dict[str, pa.Table], summary: pa.Table,
           files: dict[str, str]) -> None:
    """Write one point's tables (none for a failed point), summary and text files (name -> content, into
    runs/) whole into the dataset."""
    stage = sweep_dir / STAGING / key
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name, table in {**tables, "summary": summary}.items():
        pq.write_table(table, stage / f"{name}.parquet")
    for name, text in files.items():
        (stage / name).write_text(text)
    _write_text(stage / COMPLETE, json.dumps({"tables": list(tables), "files": list(files)}))
    with _signals_held():
        _move(sweep_dir, stage)


def _move(sweep_dir: Path, stage: Path) -> None:
    """Move a complete staged point into the dataset, its summary last, and remove the stage. The tables
    its `complete` mark does not list (a failed point) leave the dataset. Moving again a point moved in
    part (a sweep stopped mid-move) finishes it."""
    key, staged = stage.name, json.loads((stage / COMPLETE).read_text())
    for table in TABLES:
        target = partition(sweep_dir, table, key)
        if table not in staged["tables"]:
            shutil.rmtree(target, ignore_errors=True)
        elif (stage / f"{table}.parquet").exists():
            target.mkdir(parents=True, exist_ok=True)
            os.replace(stage / f"{table}.parquet", target / PART)
    runs = partition(sweep_dir, "runs", key)
    runs.mkdir(parents=True, exist_ok=True)
    for name in staged["files"]:
        if (stage / name).exists():
            os.replace(stage / name, runs / name)
    if (stage / "summary.parquet").exists():
        partition(sweep_dir, "summary", key).mkdir(parents=True, exist_ok=True)
        os.replace(stage / "summary.parquet", partition(sweep_dir, "summary", key) / PART)
    shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends (then act as usual)."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_text(path: Path, text: str) -> None:
    """Write a file whole: into a temporary name, then renamed over the old one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_summary(sweep_dir: str | Path) -> tuple[pa.Table, dict]:
    """A sweep's summary dataset (one table, its `point` column from the partitions) and sweep.json."""
    sweep_dir = Path(sweep_dir)
    description = json.loads((sweep_dir / "sweep.json").read_text())
    if description.get("simrun_version") != __version__:
        raise SweepFolderError(f"written by simrun {description.get('simrun_version')}, whose tables differ "
                               f"from simrun {__version__}'s; valid: run the sweep again")
    folder = sweep_dir / "summary"
    parts = sorted(folder.glob(f"point=*/{PART}")) if folder.is_dir() else []
    if not parts:
        raise SweepFolderError("no point has finished yet; valid: a folder `simrun sweep` has written to")
    tables = [pq.read_table(p).append_column("point", pa.array([p.parent.name.removeprefix("point=")] *
                                                               pq.read_metadata(p).num_rows)) for p in parts]
    return pa.concat_tables(tables, promote_options="default"), description
