"""Request traces: when each request arrived, its prompt and reply lengths, and which prompts share prefixes.

A trace is a CSV, Parquet or JSONL file (by its suffix: .csv, .parquet, .jsonl) in one of two schemas, told
apart by their column names (other columns are ignored):

- Azure's public LLM inference traces as microsoft/vidur ships them processed (Splitwise, ISCA 2024;
  ../shared/traces): `arrived_at` (seconds since the trace began; optional where only lengths are read),
  `num_prefill_tokens` (the prompt), `num_decode_tokens` (the reply);
- Mooncake's (kvcache-ai/Mooncake, FAST'25): `timestamp` (milliseconds since the first request),
  `input_length`, `output_length`, and `hash_ids`, the ids of the prompt's blocks of MOONCAKE_BLOCK_TOKENS
  tokens: two prompts whose lists begin alike share those blocks' tokens.

Token counts are whole numbers (a CSV may write them as 4808.0), prompts of at least 1 token, replies of 0
or more (a reply of 0 tokens counts as 1: a request samples one); arrivals are finite, non-negative and in
order. A file that breaks a rule is refused with a TraceError naming the file, the row (data rows from 1)
and the column.
"""
from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

PROMPT, REPLY = "num_prefill_tokens", "num_decode_tokens"
# Tokens per hash id in Mooncake's traces ("each hash id corresponds to a block of 512 tokens", the traces'
# README in kvcache-ai/Mooncake FAST25-release/traces; AIPerf and NVIDIA Dynamo's trace tools use the same).
MOONCAKE_BLOCK_TOKENS = 512
SCHEMAS = {   # name: (arrival column, seconds per unit, prompt column, reply column, shared-prefix column)
    "azure": ("arrived_at", 1.0, PROMPT, REPLY, None),
    "mooncake": ("timestamp", 1e-3, "input_length", "output_length", "hash_ids"),
}
VALID = ("valid: columns arrived_at, num_prefill_tokens, num_decode_tokens (Azure's traces as Vidur ships them) "
         "or timestamp, input_length, output_length, hash_ids (Mooncake's)")


class TraceError(ValueError):
    """A trace file that cannot give requests, and why (its file, row and column where one is at fault)."""


@dataclass(frozen=True)
class Trace:
    """The requests of a trace in arrival order: seconds after the first (None: the trace has no arrival
    column), prompt and reply tokens, and each prompt's block ids (None: the schema has none)."""

    arrival_s: np.ndarray | None
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.input_tokens)


def _tokens(value, least: int, where: str) -> int:
    """A whole number of tokens, at least `least`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TraceError(f"{where}: {value!r} is not a number of tokens; valid: a whole number >= {least}")
    try:
        number = float(value)
    except ValueError:
        raise TraceError(f"{where}: '{value}' is not a number of tokens; valid: a whole number >= {least}") from None
    if not math.isfinite(number) or number != int(number) or number < least:
        raise TraceError(f"{where}: {value!r} is not a whole number of tokens >= {least}")
    return int(number)


def _block_ids(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                       for v in value):
        raise TraceError(f"{where}: {str(value)[:60]!r} is not a list of block ids; valid: whole numbers >= 0")
    return tuple(value)


def parse_rows(rows, columns: list[str], name: str) -> Trace:
    """A Trace from `rows` (dicts by column name, in file order) with these `columns`; `name` names the file in
    errors."""
    schema = next((s for s, (_, _, prompt, reply, _) in SCHEMAS.items() if prompt in columns and reply in columns),
                  None)
    if schema is None:
        raise TraceError(f"{name}: no columns for prompt and reply tokens (it has {', '.join(columns[:8]) or 'none'}); "
                         f"{VALID}")
    arrival, unit, prompt, reply, shared = SCHEMAS[schema]
    timed = arrival in columns
    arrivals, inputs, outputs, blocks, last = [], [], [], [], 0.0
    for n, row in enumerate(rows, start=1):
        where = f"{name}: row {n}, column"
        inputs.append(_tokens(row.get(prompt), 1, f"{where} '{prompt}'"))
        outputs.append(max(1, _tokens(row.get(reply), 0, f"{where} '{reply}'")))
        if timed:
            at = _seconds(row.get(arrival), unit, f"{where} '{arrival}'")
            if at < last:
                raise TraceError(f"{where} '{arrival}': {row.get(arrival)!r} comes before the row above "
                                 f"({last / unit:g}); valid: rows in arrival order")
            arrivals.append(at)
            last = at
        if shared:
            blocks.append(_block_ids(row.get(shared, []), f"{where} '{shared}'"))
    if not inputs:
        raise TraceError(f"{name}: no rows")
    first = arrivals[0] if arrivals else 0.0
    return Trace(np.array(arrivals) - first if timed else None, np.array(inputs, dtype=np.int64),
                 np.array(outputs, dtype=np.int64), tuple(blocks) if shared else None)


def _seconds(value, unit: float, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceError(f"{where}: {value!r} is not a time; valid: a number >= 0") from None
    if not math.isfinite(number) or number < 0:
        raise TraceError(f"{where}: {value!r} is not a time; valid: a finite number >= 0")
    return number * unit


def read_csv(text: IO[str], name: str = "trace") -> Trace:
    reader = csv.DictReader(text)
    return parse_rows((row for row in reader if any(row.values())), list(reader.fieldnames or []), name)


def read_jsonl(text: IO[str], name: str = "trace") -> Trace:
    rows = []
    for n, line in enumerate((line for line in text if line.strip()), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{name}: row {n}: not JSON ({e.msg}); valid: one JSON object per line") from None
        if not isinstance(row, dict):
            raise TraceError(f"{name}: row {n}: not a JSON object; valid: one JSON object per line")
        rows.append(row)
    return parse_rows(rows, list(rows[0]) if rows else [], name)


def read_parquet(path: Path) -> Trace:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as e:   # pyarrow's errors for a file that is not Parquet vary by version
        raise TraceError(f"{path}: not a Parquet file ({str(e).splitlines()[0][:120]})") from None
    return parse_rows(table.to_pylist(), table.column_names, str(path))


READERS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


@functools.cache
def read_trace(path: str) -> Trace:
    """The trace in the file at `path` (read once per process)."""
    file = Path(path)
    kind = READERS.get(file.suffix.lower())
    if kind is None:
        raise TraceError(f"{path}: unknown trace format '{file.suffix}'; valid: .csv, .parquet, .jsonl")
    if kind == "parquet":
        return read_parquet(file)
    with open(file, newline="") as f:
        return read_csv(f, path) if kind == "csv" else read_jsonl(f, path)


def read_lengths(text: IO[str]) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and reply tokens of every row of a CSV trace."""
    trace = read_csv(text)
    return trace.input_tokens, trace.output_tokens


def file_lengths(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and reply tokens of every row of the trace file at `path`."""
    trace = read_trace(path)
    return trace.input_tokens, trace.output_tokens


def continuations(hash_ids: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """For each request, the latest earlier request whose whole prompt begins its own (the same block ids
    first: a conversation's next turn, or the same prompt sent again), -1 if none, and how many blocks they
    share. A prefix tree of the block ids, walked once per request."""
    root: dict = {}
    parent = np.full(len(hash_ids), -1, dtype=np.int64)
    shared = np.zeros(len(hash_ids), dtype=np.int64)
    for i, ids in enumerate(hash_ids):
        node = root
        for depth, block in enumerate(ids, start=1):
            node = node.setdefault(block, {})
            ended = node.get(None)   # the latest request whose prompt's blocks end here
            if ended is not None:
                parent[i], shared[i] = ended, depth
        if ids:
            node[None] = i
    return parent, shared
