"""Output folders checked before any compute: a folder a command cannot write in is refused with the setting
that named it, instead of a FileNotFoundError traceback after the model or data were loaded.  Also the temp
folders whose files are published by renames (reports, exports), cleared of those a killed writer left, and the one
way a file is written atomically (``atomic_path``)."""
from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ups.config import ConfigError


class OutputWriteError(OSError):
    """A result file (the leaderboard) could not be written after compute was spent; the message says where the
    results are kept and the command that writes them once the file can take them. ``sweeps/*.py`` exit 1 on it."""


# the folders ``make_writable_folder`` created inside a ``refusal_leaves_no_folders`` block, outermost first
_MADE: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("ups_folders_made", default=None)


def make_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and write and remove a probe file in it: OSError when it cannot
    take a file (a read-only mount passes ``os.access``)."""
    folder, made = Path(folder), _MADE.get()
    # inside ``refusal_leaves_no_folders`` only: the folders this call makes, outermost first
    missing = [f for f in (folder, *folder.parents) if not f.exists()][::-1] if made is not None else []
    folder.mkdir(parents=True, exist_ok=True)
    if made is not None:
        made.extend(f for f in missing if f.is_dir())
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".ups-probe-"):
        pass


@contextlib.contextmanager
def refusal_leaves_no_folders() -> Iterator[None]:
    """A command's checks create the output folders they probe (``make_writable_folder``); when the block ends in a
    ConfigError (bad input refused, nothing computed) the folders it created and left empty are removed, innermost
    first, so a refused command leaves the tree as it found it. A folder that took a file stays."""
    token = _MADE.set([])
    try:
        yield
    except ConfigError:
        for folder in reversed(_MADE.get() or []):
            with contextlib.suppress(OSError):  # not empty (a file was written there), or gone: kept as it is
                folder.rmdir()
        raise
    finally:
        _MADE.reset(token)


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


def umask() -> int:
    """This process's umask: from /proc (Linux), which leaves it as it is for the process's other threads; elsewhere
    by setting it and putting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temp file beside ``path`` (``.<name>.<random><suffix>``, its folder made) for the caller to
    write; on a clean exit rename it onto ``path``, with the permissions a plain ``open(path, "w")`` would give
    (mkstemp makes 0600: results, checkpoints and records are meant to be shared), else remove it. A reader sees the
    old file or the new one, never half of one; a killed writer leaves at most the temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` into ``path`` (UTF-8) through ``atomic_path``; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
