"""Output folders checked before any compute: a folder a command cannot write in is refused with the setting
that named it, instead of a FileNotFoundError traceback after the model or data were loaded.  Also the temp
folders whose files are published by renames (reports, exports), cleared of those a killed writer left."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ups.config import ConfigError


def make_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and write and remove a probe file in it: OSError when it cannot
    take a file (a read-only mount passes ``os.access``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".ups-probe-"):
        pass


def check_writable_folder(folder: Path, setting: str, example: str) -> None:
    """``make_writable_folder``, with a ConfigError naming ``setting`` if it cannot."""
    folder = Path(folder).expanduser()
    try:
        make_writable_folder(folder)
    except OSError as e:
        raise ConfigError(f"{setting}: cannot write in '{folder}' ({e.strerror or e}). Fix: a folder you can "
                          f"write, e.g. {example}") from None


def probe_writable_file(path: Path) -> None:
    """OSError unless ``path`` can take a file a command writes (or rewrites) later: not a folder, in a folder that
    takes files (``make_writable_folder``), not read-only."""
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder")
    make_writable_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"'{path}' is read-only")


def check_writable_file(path: Path, setting: str, example: str) -> None:
    """``probe_writable_file``, with a ConfigError naming ``setting`` if it cannot."""
    path = Path(path).expanduser()
    try:
        probe_writable_file(path)
    except OSError as e:
        raise ConfigError(f"{setting}: cannot write '{path}' ({e.strerror or e}). Fix: a file path you can write, "
                          f"e.g. {example}") from None


def process_alive(pid: int) -> bool:
    """Is process ``pid`` alive on this machine (another user's counts: it cannot be signalled, but it runs)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_temp_folder(parent: Path, stem: str, grace_s: float = 60.0) -> Path:
    """``parent/.<stem>.tmp-<pid>``, empty, for a write published by renames; first removes the ones of
    processes that are gone (this machine's pids; only folders untouched for ``grace_s``), which a writer killed
    mid-write left behind for good (a report killed while drawing its plots)."""
    for old in parent.glob(f".{stem}.tmp-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue  # not one of ours, or its writer runs
        try:
            if time.time() - old.stat().st_mtime > grace_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    tmp = parent / f".{stem}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp
