"""Which code a sweep ran: a sweep's record keeps it, so that a resume refused for a change of code can say
which version to resume with (``git checkout <commit>``)."""
from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ups.data import cache

ROOT = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, str]:
    """``{"commit": <git describe of this checkout, "-dirty" with local edits; "" outside a git checkout>,
    "version": <the installed package's version>, "data_version": ups.data.cache.DATA_VERSION}``."""
    commit, version = _installed()
    return {"commit": commit, "version": version, "data_version": cache.DATA_VERSION}


@lru_cache(maxsize=1)
def _installed() -> tuple[str, str]:
    commit = ""
    if (ROOT / ".git").exists():
        try:
            done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                                  capture_output=True, text=True, timeout=10)
            commit = done.stdout.strip() if done.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            commit = ""
    try:
        version = metadata.version("ups-sweeps")
    except metadata.PackageNotFoundError:
        version = ""
    return commit, version


def other_data_version(code: dict[str, str] | None, trial: dict[str, Any]) -> str:
    """The data generator version a record's ``code`` names where it is not this code's and the trials' data is
    generated (``trial``: a flat trial config; a file given as ``data.path`` is read as it is), else "". Records
    from before 2026-12-07 name none."""
    was = str((code or {}).get("data_version") or "")
    return was if was and was != cache.DATA_VERSION and not trial.get("data.path") else ""


def describe(code: dict[str, str] | None) -> str:
    """How a record's ``code`` section reads in a message: ``UPS Sweeps commit 345b666b71a3 (data version 2)``."""
    if not code:
        return "a UPS Sweeps version from before 2026-12-07 (its record keeps no commit)"
    what = f"commit {code['commit']}" if code.get("commit") else f"version {code.get('version') or '?'}"
    return f"UPS Sweeps {what} (data version {code.get('data_version', '?')})"


def checkout_fix(code: dict[str, str] | None, sweep: str = "") -> str:
    """The fix's first half: check out the code the record names (a dirty tree's commit without its suffix), or,
    for a record that names none, the last commit before sweep ``sweep`` (``<round>-YYYYmmdd-HHMMSS``) started."""
    commit = str((code or {}).get("commit") or "").removesuffix("-dirty")
    if commit:
        return f"git checkout {commit}"
    m = re.search(r"-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})", sweep)
    if m:
        y, mo, d, h, mi, sec = m.groups()
        return f"git checkout $(git rev-list -1 --before='{y}-{mo}-{d}T{h}:{mi}:{sec}Z' HEAD) (the last commit before it started)"
    return "install the version that started it"
