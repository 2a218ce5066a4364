"""One inter-process lock for files several processes write (leaderboard, data cache, S3 sync)."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Iterator


def _open_locked(lock_path: Path, removable: bool) -> IO[str]:
    """``lock_path`` opened and ``flock``-ed.  ``removable``: the holder before may have removed the file while this
    process waited on it, so the lock held is on a file no longer at that path; lock the one there now instead."""
    while True:
        fh = open(lock_path, "a")
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not removable:
            return fh
        try:
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh
        except FileNotFoundError:
            pass
        fh.close()


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created, with its folder, if missing).  ``remove``: delete the
    file when the lock is let go (for a lock file in a shared temp folder, one per sweep, that would otherwise
    gather); every user of that path must pass it, as each then checks that the file it locked is still there."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = _open_locked(lock_path, remove)
    try:
        yield
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
