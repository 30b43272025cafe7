"""Outputs are written whole or not at all."""
import json

import pyarrow as pa
import pytest

from sim import output


class Broken:
    """A table whose writing fails part way."""
    schema = pa.schema([])

    def replace_schema_metadata(self, _):
        raise RuntimeError("disk full")


def test_write_replaces_whole_directory(tmp_path):
    out = tmp_path / "res"
    table = pa.table({"x": [1, 2]})
    output.write(out, {"a": table}, {"seed": 1})
    output.write(out, {"b": table}, {"seed": 2})
    assert sorted(p.name for p in out.iterdir()) == ["b.parquet", "run.json"]
    assert json.loads((out / "run.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temporary or backup folder left


def test_failed_write_leaves_previous_results(tmp_path):
    out = tmp_path / "res"
    output.write(out, {"a": pa.table({"x": [1]})}, {"seed": 1})
    with pytest.raises(RuntimeError):
        output.write(out, {"a": pa.table({"x": [1]}), "b": Broken()}, {"seed": 2})
    assert json.loads((out / "run.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


def test_failed_write_leaves_no_folder_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        output.write(tmp_path / "a" / "b" / "res", {"b": Broken()}, {"seed": 1})
    assert list(tmp_path.iterdir()) == []


def test_metadata_carries_the_run(tmp_path):
    import pyarrow.parquet as pq
    output.write(tmp_path / "r", {"a": pa.table({"x": [1]})}, {"seed": 5, "simrun_version": "0.2.0"})
    meta = pq.read_schema(tmp_path / "r" / "a.parquet").metadata
    assert json.loads(meta[b"simrun"])["seed"] == 5
