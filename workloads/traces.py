"""Request lengths from a trace file: a CSV with a header naming the columns num_prefill_tokens (the
prompt) and num_decode_tokens (the reply), the format of the processed traces microsoft/vidur ships (Azure's
conversation and code traces, Splitwise, ISCA 2024); other columns are ignored."""
from __future__ import annotations

import csv
import functools
from typing import IO

import numpy as np

PROMPT, REPLY = "num_prefill_tokens", "num_decode_tokens"


class TraceError(ValueError):
    """A trace file that cannot give lengths, and why."""


def read_lengths(text: IO[str]) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and reply tokens of every row (replies of 0 tokens count as 1: a request samples one)."""
    reader = csv.reader(text)
    header = next(reader, None)
    if not header or PROMPT not in header or REPLY not in header:
        raise TraceError(f"no header with columns {PROMPT} and {REPLY}")
    p, r = header.index(PROMPT), header.index(REPLY)
    try:
        rows = [(int(float(row[p])), int(float(row[r]))) for row in reader if row]
    except (ValueError, IndexError) as e:
        raise TraceError(f"a row without two token counts ({e})") from None
    if not rows:
        raise TraceError("no rows")
    prompts, replies = (np.array(column, dtype=np.int64) for column in zip(*rows))
    if (prompts < 1).any() or (replies < 0).any():
        raise TraceError("a prompt of fewer than 1 token or a negative reply")
    return prompts, np.maximum(replies, 1)


@functools.cache
def file_lengths(path: str) -> tuple[np.ndarray, np.ndarray]:
    """read_lengths of the file at `path` (read once per process)."""
    with open(path, newline="") as f:
        return read_lengths(f)
