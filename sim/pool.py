"""Local worker processes shared by `simrun validate` and `simrun sweep`."""
from __future__ import annotations

import os
import signal


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def die_on_interrupt() -> None:
    """A worker ends at once on Ctrl-C, without a traceback: the command line answers for the run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
