"""``ups.outputs.atomic_path``: the one way the project writes a file atomically (leaderboard, champion record,
checkpoints, latent cache, baselines, eval results, comparison page, S3 downloads)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ups.outputs import atomic_path, write_text_atomic


def test_a_finished_write_replaces_the_file_with_a_plain_files_permissions(tmp_path: Path) -> None:
    """mkstemp makes its file 0600: a champion record or checkpoint published that way was unreadable by the
    group that shares the results folder. The published file has what ``open(path, "w")`` would give."""
    target = tmp_path / "sub" / "record.json"
    old = os.umask(0o022)
    try:
        write_text_atomic(target, "one")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert target.read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]  # no temp file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "leaderboard.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".leaderboard.csv.") and tmp.name.endswith(".tmp")
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv"]


def test_two_writers_get_their_own_temp_files(tmp_path: Path) -> None:
    """``ups baselines`` wrote its table through the fixed name ``<stem>.csv.tmp``: two processes writing it at once
    truncated each other's temp file. Each ``atomic_path`` has its own."""
    target = tmp_path / "baselines.csv"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # b was renamed first (inner block), then a
    assert [p.name for p in tmp_path.iterdir()] == ["baselines.csv"]
