"""ups.filelock.exclusive_lock: one holder at a time, also when each holder removes the lock file it leaves."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from ups.filelock import exclusive_lock


def _add(lock: str, counter: str, times: int, remove: bool) -> None:
    for _ in range(times):
        with exclusive_lock(Path(lock), remove=remove):
            c = Path(counter)
            n = int(c.read_text() or 0)  # a read-then-write that two holders at once would lose counts of
            c.write_text(str(n + 1))


@pytest.mark.parametrize("remove", [False, True])
def test_one_holder_at_a_time(tmp_path: Path, remove: bool) -> None:
    lock, counter = tmp_path / "locks" / "x.lock", tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add, args=(str(lock), str(counter), 200, remove)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert counter.read_text() == "800"
    assert lock.exists() is not remove  # remove=True leaves no lock file behind
