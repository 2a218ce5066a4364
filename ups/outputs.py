"""Output folders checked before any compute: a folder a command cannot write in is refused with the setting
that named it, instead of a FileNotFoundError traceback after the model or data were loaded."""
from __future__ import annotations

import tempfile
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
