"""One driver per sweep: a lease file in the experiment folder (local or S3) names the driver running it.

``resume=true`` of a sweep whose driver is still running (in another terminal, under ``nohup``, on the
head node of a cluster) used to start a second driver on the same experiment folder: both trained the same
trials, appended to the same ``result.json`` files and wrote rival leaderboard rows.  The driver that runs
a sweep now keeps ``ups_driver.json`` (host, pid and when that process started, start, heartbeat) next to the
Tune state, renewed every ``RENEW_S`` by a background thread and removed when the driver ends, however it ends short of SIGKILL.
Another driver refuses to run that sweep while the lease is live: on the same host while its process is
alive (the same pid and process start: pids are reused), from another host while its heartbeat is younger
than ``STALE_S``.  A lease left by a killed driver
does not block: its process is gone (same host) or its heartbeat goes stale (another host).

Two drivers started at the same moment both looked, found no live lease and both wrote theirs. Taking a lease is now
one step: on a local folder the look and the write happen under a lock of this machine (``flock``); on S3, which has
no such lock, the driver reads its lease back ``SETTLE_S`` after writing it and gives way if another driver's is
there. A renewal that finds another driver's live lease stops renewing and says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ups.config import ConfigError
from ups.filelock import exclusive_lock
from ups.outputs import process_alive
from ups.tune.sweep_record import experiment_file

LEASE = "ups_driver.json"
RENEW_S = 30.0  # heartbeat period
STALE_S = 180.0  # a heartbeat this old is a dead driver's (6 missed renewals, and room for clock skew)
SETTLE_S = 1.0  # S3: how long after writing its lease a driver reads it back (a rival that looked before wrote by then)


def _lease_file(storage: str, fs: Any, name: str) -> tuple[Any, str]:
    return experiment_file(storage, fs, name, LEASE)


def read_lease(storage: str, fs: Any, name: str) -> dict[str, Any] | None:
    """The lease in sweep ``name``'s folder, None when there is none (or it is unreadable: a torn write of a
    driver killed mid-renewal blocks nothing)."""
    fs, path = _lease_file(storage, fs, name)
    try:
        with fs.open_input_stream(path) as f:
            lease = json.loads(f.read().decode())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return lease if isinstance(lease, dict) else None


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with the pid, the
    identity of a process, as pids are reused (32,768 of them here); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def live_driver(lease: dict[str, Any] | None, now: float | None = None) -> str | None:
    """Who still runs the sweep (a phrase for the message), or None when the lease is this process's own, a
    dead driver's, or stale."""
    if not lease:
        return None
    host, pid = str(lease.get("host", "")), int(lease.get("pid", 0) or 0)
    age = (now if now is not None else time.time()) - float(lease.get("heartbeat", 0) or 0)
    if host == socket.gethostname():
        if pid == os.getpid() or not process_alive(pid):
            return None
        if lease.get("pid_start") is not None and _process_start(pid) not in (None, lease["pid_start"]):
            return None  # the dead driver's pid, reused by another process (it blocked the resume)
        return f"driver pid {pid} on this machine (started {lease.get('started', '?')}, last heartbeat {age:.0f} s ago)"
    if age >= STALE_S:
        return None
    return f"driver pid {pid} on host {host} (started {lease.get('started', '?')}, last heartbeat {age:.0f} s ago)"


def _local_lock(fs: Any, path: str) -> Path | None:
    """This machine's lock for taking the lease at ``path`` on a local filesystem (in the temp folder, named by the
    path: nothing is added to the sweep's folder; removed once the lease is taken); None for remote storage."""
    from pyarrow import fs as pafs

    if not isinstance(fs, pafs.LocalFileSystem):
        return None
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ups-driver-lease-{digest}.lock"


def _mine(lease: dict[str, Any] | None) -> bool:
    return bool(lease) and lease.get("host") == socket.gethostname() and int(lease.get("pid", 0) or 0) == os.getpid()


def check_no_live_driver(storage: str, fs: Any, name: str, display: str) -> None:
    """Refuse to run sweep ``name`` while another driver runs it."""
    who = live_driver(read_lease(storage, fs, name))
    if who is None:
        return
    raise ConfigError(
        f"sweep {display}/{name} is still running: {who}. A second driver would train the same trials into the "
        f"same folder. Fix: wait for it to finish, or stop it (Ctrl-C or kill <pid>; kill -9 also works) and then "
        f"resume=true; or name= another sweep. If no driver runs it any more, delete {display}/{name}/{LEASE} "
        f"(a lease from another host expires {STALE_S:.0f} s after its last heartbeat)")


@dataclass
class DriverLease:
    """This driver's lease on sweep ``name``: ``acquire`` (refusing a live driver), renewed by a daemon thread,
    ``release`` at the end."""

    storage: str
    fs: Any
    name: str
    display: str
    renew_s: float = RENEW_S
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _started: str = ""
    _pid_start: int | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def acquire(self) -> "DriverLease":
        self._started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self._pid_start = _process_start(os.getpid())
        fs, path = _lease_file(self.storage, self.fs, self.name)
        lock = _local_lock(fs, path)
        if lock is not None:  # the look and the write as one step among this machine's drivers
            with exclusive_lock(lock, remove=True):
                check_no_live_driver(self.storage, self.fs, self.name, self.display)
                self._write()
        else:
            check_no_live_driver(self.storage, self.fs, self.name, self.display)
            self._write()
            time.sleep(SETTLE_S)  # a driver that looked before this write wrote its own by now: the last one wins
            if not _mine(read_lease(self.storage, self.fs, self.name)):
                check_no_live_driver(self.storage, self.fs, self.name, self.display)  # names the winner
                raise ConfigError(f"sweep {self.display}/{self.name}: another driver took its lease at the same "
                                  f"moment. Fix: wait for it to finish, or resume=true once it has stopped")
        self._thread = threading.Thread(target=self._renew, name="ups-driver-lease", daemon=True)
        self._thread.start()
        return self

    def _write(self) -> None:
        fs, path = _lease_file(self.storage, self.fs, self.name)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        body = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": self._pid_start,
                "started": self._started, "heartbeat": time.time()}
        with fs.open_output_stream(path) as out:
            out.write(json.dumps(body).encode())

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                lease = read_lease(self.storage, self.fs, self.name)
                if not _mine(lease) and (who := live_driver(lease)) is not None:
                    print(f"[ups sweep] warning: the lease of sweep {self.display}/{self.name} now names {who}: two "
                          f"drivers run this sweep. Stop one of them (Ctrl-C); this one no longer renews its lease",
                          file=sys.stderr, flush=True)
                    return
                self._write()
            except OSError:  # a storage hiccup: the next renewal tries again, well before the lease goes stale
                pass

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still this driver's."""
        self._stop.set()
        if self._thread is not None:  # a renewal under way would write the lease again after it was removed (and
            self._thread.join(timeout=10)  # its folder, which a refused new sweep removes next)
        lease = read_lease(self.storage, self.fs, self.name)
        if _mine(lease):
            fs, path = _lease_file(self.storage, self.fs, self.name)
            try:
                fs.delete_file(path)
            except OSError:
                pass
