"""Which process of a run this is, for a run of several processes (--distribute data over
several hosts, training.distribute.start_processes): process 0 writes every file, the others
compute in lockstep with it and write none.

One run directory and one cache folder serve every process; were each process to write them,
they would race on the same files (two renames of state.json, two backups under one name).
Every file is written through data.cache.write_atomically, or beside it in rundir and
training.state, and each asks `writes_files()` first. Until start_processes says otherwise
this is process 0 of 1: a run of one process writes as it always has.
"""

from __future__ import annotations

_this_process = (0, 1)  # (this process's index, the run's process count)


def set_process(index: int, count: int) -> None:
    """Records the index of this process among `count` (start_processes, once JAX knows)."""
    global _this_process
    _this_process = (index, count)


def process_index() -> int:
    return _this_process[0]


def process_count() -> int:
    return _this_process[1]


def writes_files() -> bool:
    """Whether this process writes the run's files: process 0 alone."""
    return _this_process[0] == 0
