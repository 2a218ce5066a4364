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


def test_a_refusal_removes_the_empty_folders_its_checks_made_and_keeps_the_rest(tmp_path: Path) -> None:
    """The checks probe each output folder by making it (``make_writable_folder``); a command refused after that
    (a round's own requirement, a champion file it cannot read) left those folders behind, empty. A refusal now
    removes what its checks made and left empty; a folder that was there before, or took a file, stays."""
    from ups.config import ConfigError
    from ups.outputs import make_writable_folder, refusal_leaves_no_folders

    (tmp_path / "old").mkdir()
    with pytest.raises(ConfigError, match="refused"):
        with refusal_leaves_no_folders():
            make_writable_folder(tmp_path / "runs" / "deep" / "er")
            make_writable_folder(tmp_path / "old" / "reports")
            make_writable_folder(tmp_path / "kept" / "sub")
            (tmp_path / "kept" / "sub" / "result.csv").write_text("x")  # a file was written: it and its folders stay
            raise ConfigError("refused")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "kept", "kept/sub", "kept/sub/result.csv", "old"]
    with refusal_leaves_no_folders():  # no refusal: every folder stays, as the command goes on to write there
        make_writable_folder(tmp_path / "runs" / "a")
    with pytest.raises(KeyboardInterrupt):  # a stop is not a refusal: the run may have written its state there
        with refusal_leaves_no_folders():
            make_writable_folder(tmp_path / "stopped")
            raise KeyboardInterrupt
    assert (tmp_path / "runs" / "a").is_dir() and (tmp_path / "stopped").is_dir()


def test_a_round_refused_by_its_own_check_leaves_no_output_folders(tmp_path: Path, capsys) -> None:
    """``python sweeps/dims.py ttc.enabled=false`` is refused after ``prepare`` probed the storage, leaderboard and
    report folders: it left ``runs/`` and ``reports/`` behind, empty. Now the tree is as it was (no Ray is started:
    the refusal comes first)."""
    from ups.tune.cli import load_round, run_script

    args = [f"storage_path={tmp_path / 'out' / 'runs'}", f"leaderboard={tmp_path / 'out' / 'lb' / 'leaderboard.csv'}",
            f"report_dir={tmp_path / 'out' / 'reports'}", f"champion={tmp_path / 'out' / 'lb' / 'champion.json'}",
            "ttc.enabled=false"]
    assert run_script(load_round("dims"), args) == 2
    assert "dims: ttc.enabled=false" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_write_text_atomic_writes_utf8_and_returns_the_path(tmp_path: Path) -> None:
    """Records carry non-ASCII text (labels, units): written as UTF-8 whatever the locale, and the path returned
    is the published file, not the temp one."""
    target = tmp_path / "card.md"
    assert write_text_atomic(target, "ν = 0.01 — é") == target
    assert target.read_bytes() == "ν = 0.01 — é".encode("utf-8")


def test_a_reader_of_the_old_file_keeps_reading_the_old_file(tmp_path: Path) -> None:
    """Published by a rename: a reader that opened the old leaderboard reads it whole, never the new bytes or a
    truncated file (a copy over the same file would change what it reads)."""
    target = tmp_path / "leaderboard.csv"
    target.write_text("old,rows\n")
    with open(target) as reader:
        write_text_atomic(target, "new,rows,longer\n")
        assert reader.read() == "old,rows\n"
    assert target.read_text() == "new,rows,longer\n"


def test_probe_writable_file_refuses_a_folder_and_an_unusable_parent(tmp_path: Path) -> None:
    """A folder given as the leaderboard, or a leaderboard under a plain file, is refused before compute; a new
    file in a new folder passes (the folder is made)."""
    from ups.outputs import probe_writable_file

    with pytest.raises(IsADirectoryError):
        probe_writable_file(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        probe_writable_file(blocker / "leaderboard.csv")
    probe_writable_file(tmp_path / "new" / "leaderboard.csv")
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "leaderboard.csv").exists()


def test_output_settings_expand_the_home_folder(tmp_path: Path, monkeypatch) -> None:
    """``out=~/reports`` means the user's home, not a folder named '~' in the current one."""
    from ups.outputs import check_writable_file, check_writable_folder

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    check_writable_folder(Path("~/reports"), "out", "out=reports")
    check_writable_file(Path("~/lb/leaderboard.csv"), "leaderboard", "leaderboard=lb.csv")
    assert (home / "reports").is_dir() and (home / "lb").is_dir() and not (cwd / "~").exists()


def test_a_fresh_temp_folder_is_empty_even_if_this_pid_left_one(tmp_path: Path) -> None:
    """A pid is reused: a folder a killed writer of this pid left is emptied, so its stale plots are not published."""
    from ups.outputs import fresh_temp_folder

    mine = tmp_path / f".round_a.tmp-{os.getpid()}"
    mine.mkdir()
    (mine / "stale.png").write_bytes(b"old")
    assert fresh_temp_folder(tmp_path, "round_a") == mine and list(mine.iterdir()) == []
