"""Output folders checked before any compute: a folder a command cannot write in is refused with the setting
that named it, instead of a FileNotFoundError traceback after the model or data were loaded."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ups.config import ConfigError


def check_writable_folder(folder: Path, setting: str, example: str) -> None:
    """Create ``folder`` (and parents) and write a probe file in it; ConfigError naming ``setting`` if it cannot."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ups-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{setting}: cannot write in '{folder}' ({e.strerror or e}). Fix: a folder you can "
                          f"write, e.g. {example}") from None
