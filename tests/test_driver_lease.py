"""One driver per sweep: a second driver refuses a sweep another one still runs, and a new sweep refuses the
folder of an earlier one (the end-to-end check, a real second driver refused while the first runs, is in
``tests/test_fault_driver.py::test_a_resumed_sweep_takes_the_new_concurrency_and_can_be_stopped_again``)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ups.config import ConfigError
from ups.tune.driver_lease import LEASE, STALE_S, DriverLease, check_no_live_driver, live_driver, read_lease


def _lease(folder: Path, host: str, pid: int, age_s: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE).write_text(json.dumps({"host": host, "pid": pid, "started": "then",
                                            "heartbeat": time.time() - age_s}))


def test_a_sweep_whose_driver_runs_is_refused_before_any_compute(tmp_path: Path) -> None:
    from ups.tune.launcher import run_round

    runs, cache, lb = tmp_path / "runs", tmp_path / "cache", tmp_path / "lb.csv"
    (runs / "busy").mkdir(parents=True)
    (runs / "busy" / "tuner.pkl").write_bytes(b"")  # what Tune.can_restore looks for
    driver = subprocess.Popen(["sleep", "120"])  # a live process that holds the lease
    try:
        _lease(runs / "busy", socket.gethostname(), driver.pid, age_s=400)  # its heartbeat may be old: it is alive
        with pytest.raises(ConfigError, match=rf"sweep .*/runs/busy is still running: driver pid {driver.pid} on "
                                              r"this machine .* Fix: wait for it to finish, or stop it"):
            run_round("round_a", [f"storage_path={runs}", "name=busy", "resume=true", f"leaderboard={lb}",
                                  f"data.cache_dir={cache}", "wandb.enabled=false"])
        assert not lb.exists() and not cache.exists(), "data or baselines were computed first"
    finally:
        driver.kill()
        driver.wait()
    check_no_live_driver(str(runs), None, "busy", str(runs))  # its driver is gone: a resume may go on


def test_a_dead_drivers_pid_taken_by_another_process_does_not_hold_the_lease(tmp_path: Path) -> None:
    """pids wrap (32,768 here): a killed driver's pid reused by an unrelated process blocked every resume as
    "still running".  The lease records when its process started; another start is another process."""
    from ups.tune.driver_lease import _process_start

    other = subprocess.Popen(["sleep", "120"])
    try:
        started = _process_start(other.pid)
        assert started is not None
        lease = {"host": socket.gethostname(), "pid": other.pid, "heartbeat": time.time()}
        assert live_driver({**lease, "pid_start": started}) is not None  # that process holds it
        assert live_driver({**lease, "pid_start": started - 1}) is None  # an earlier process with that pid
        assert live_driver(lease) is not None  # a lease written before pid_start: the pid decides, as before
    finally:
        other.kill()
        other.wait()


def test_a_lease_from_another_host_holds_until_its_heartbeat_is_stale(tmp_path: Path) -> None:
    _lease(tmp_path / "s", "head-node-7", 4242, age_s=10)
    with pytest.raises(ConfigError, match=r"driver pid 4242 on host head-node-7 .*last heartbeat 1\d s ago"):
        check_no_live_driver(str(tmp_path), None, "s", "s3://b/sweeps")
    _lease(tmp_path / "s", "head-node-7", 4242, age_s=STALE_S + 1)
    assert live_driver(read_lease(str(tmp_path), None, "s")) is None
    _lease(tmp_path / "s", socket.gethostname(), os.getpid())  # this process's own (an earlier run_round)
    assert live_driver(read_lease(str(tmp_path), None, "s")) is None
    (tmp_path / "s" / LEASE).write_text('{"host": "head-node-7", "pid"')  # torn by a kill mid-write
    assert read_lease(str(tmp_path), None, "s") is None


def test_the_lease_is_renewed_while_held_and_removed_on_release(tmp_path: Path) -> None:
    lease = DriverLease(str(tmp_path), None, "s", str(tmp_path), renew_s=0.2).acquire()
    try:
        first = read_lease(str(tmp_path), None, "s")["heartbeat"]
        time.sleep(0.7)
        assert read_lease(str(tmp_path), None, "s")["heartbeat"] > first
    finally:
        lease.release()
    assert not (tmp_path / "s" / LEASE).exists()
    _lease(tmp_path / "s", "head-node-7", 4242)  # another driver's lease is not this one's to remove
    DriverLease(str(tmp_path), None, "s", str(tmp_path)).release()
    assert (tmp_path / "s" / LEASE).exists()


SECOND_DRIVER = """
import sys
from ups.config import ConfigError
from ups.tune.launcher import run_round
try:
    run_round("round_a", sys.argv[1:])
except ConfigError as e:
    print("refused: " + " ".join(str(e).split()))
"""


def test_a_second_driver_is_refused_while_the_first_makes_its_data(tmp_path: Path, monkeypatch) -> None:
    """The lease is taken before the data and baselines: a second driver given the same name= meanwhile is refused
    at once, and the first one's record is left as it wrote it (the second rewrote it with its own settings,
    and the lease, taken after the data, refused it only then)."""
    import ups.tune.launcher as launcher

    runs = tmp_path / "runs"
    args = [f"storage_path={runs}", "name=busy", f"leaderboard={tmp_path / 'lb.csv'}",
            f"data.cache_dir={tmp_path / 'cache'}", "wandb.enabled=false"]
    seen: dict[str, object] = {}

    def data_phase(base: object) -> None:  # the first driver, making its data: a second one starts
        record = (runs / "busy" / "ups_sweep.json").read_text()
        second = subprocess.run([sys.executable, "-c", SECOND_DRIVER, *args, "num_samples=3"], capture_output=True,
                                text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
        seen.update(said=second.stdout + second.stderr,
                    same=(runs / "busy" / "ups_sweep.json").read_text() == record)
        raise KeyboardInterrupt  # then the first one is stopped there

    monkeypatch.setattr(launcher, "load_data", data_phase)
    with pytest.raises(KeyboardInterrupt):
        launcher.run_round("round_a", args)
    assert f"refused: sweep {runs}/busy is still running: driver pid {os.getpid()}" in str(seen["said"]), seen["said"]
    assert seen["same"], "the second driver rewrote the first one's record"
    assert not (runs / "busy" / LEASE).exists() and (runs / "busy" / "ups_sweep.json").is_file()  # kept: interrupted


def test_a_driver_that_loses_the_race_for_a_new_folder_writes_and_removes_nothing(tmp_path: Path) -> None:
    """Two drivers of one name= start together and both find no folder: the one refused by the other's lease
    neither rewrites the record nor removes the folder it had thought it would make (with the winner's lease)."""
    from ups.tune.sweep_record import RECORD, provisional_folder

    runs = tmp_path / "runs"
    winner = subprocess.Popen(["sleep", "120"])

    class Late(DriverLease):  # the winner's lease lands between this driver's look at the folder and its own lease
        def acquire(self) -> "DriverLease":
            _lease(runs / "race", socket.gethostname(), winner.pid)
            return super().acquire()

    try:
        with pytest.raises(ConfigError, match=rf"is still running: driver pid {winner.pid}"):
            with provisional_folder(str(runs), None, "race", {"name": "race"}, new=True,
                                    lease=Late(str(runs), None, "race", str(runs))):
                pytest.fail("the refused driver went on")
        assert read_lease(str(runs), None, "race")["pid"] == winner.pid  # the winner's lease and folder are kept
        assert not (runs / "race" / RECORD).exists()
    finally:
        winner.kill()
        winner.wait()


def test_a_new_sweep_refuses_the_folder_of_an_earlier_one(tmp_path: Path) -> None:
    from ups.tune.launcher import run_round

    runs, lb = tmp_path / "runs", tmp_path / "lb.csv"
    (runs / "final").mkdir(parents=True)
    (runs / "final" / "tuner.pkl").write_bytes(b"")
    (runs / "final" / "experiment_state-2026-12-05_01-00-00.json").write_text('{"trial_data": []}')  # saved state
    with pytest.raises(ConfigError, match=r"name=final: '.*/runs/final' already holds a sweep\. Fix: resume=true"):
        run_round("round_a", [f"storage_path={runs}", "name=final", f"leaderboard={lb}",
                              f"data.cache_dir={tmp_path / 'cache'}", "wandb.enabled=false"])
    assert not lb.exists()


def test_a_new_sweep_refuses_a_name_the_leaderboard_holds_trials_of(tmp_path: Path) -> None:
    """name=X under another storage_path (or after X's folder was deleted) with the same leaderboard: the new
    sweep's rows would be ranked and promoted with the old X's trials, so it is refused before any compute."""
    from ups.leaderboard import upsert_rows
    from ups.tune.launcher import check_sweep_folder
    from ups.tune.prepare import prepare

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [{"run_id": "x-1", "experiment": "x", "kind": "trial", "trial_id": "1", "nrmse": 0.1,
                      "timestamp": "2026-12-01T10:00:00+00:00"},
                     {"run_id": "baseline-fno", "experiment": "y", "kind": "baseline", "nrmse": 0.2}])
    args = [f"storage_path={tmp_path / 'elsewhere'}", f"leaderboard={lb}", "wandb.enabled=false"]
    with pytest.raises(ConfigError, match=r"name=x: the leaderboard .*lb.csv already holds 1 trial row\(s\) of a sweep "
                                          r"named x \(from 2026-12-01T10:00:00\+00:00\), which is not in .*elsewhere/x.*"
                                          r"Fix: name= a new sweep"):
        check_sweep_folder(prepare("round_a", [*args, "name=x"]), "x")
    check_sweep_folder(prepare("round_a", [*args, "name=y"]), "y")  # baseline rows name no sweep
    check_sweep_folder(prepare("round_a", [*args, "name=z"]), "z")


NAMING = """
import sys, time
from datetime import datetime, timezone
from ups.tune.sweep_record import new_sweep_name
start = float(sys.argv[2])
while time.time() < start:  # all start together
    pass
print(new_sweep_name("round_a", sys.argv[1], None, now=datetime(2026, 12, 5, 19, 21, 22, tzinfo=timezone.utc)))
"""


def test_sweeps_of_a_round_started_in_the_same_second_get_their_own_names(tmp_path: Path) -> None:
    """Two sweeps of a round started in one second (two terminals, a shell loop with &) were both named
    <round>-<that second>: the second was refused as 'still running' once its data had loaded. Four drivers
    naming themselves at the same instant on this machine now take four names, in the order resume=true reads."""
    from ups.tune.sweep_record import latest_sweep

    runs = tmp_path / "runs"
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}  # the claims folder of these drivers: tempfile's
    (tmp_path / "tmp").mkdir()

    def driver(storage: Path, start: float = 0.0) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", NAMING, str(storage), str(start)], env=env, text=True,
                                stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])

    start = time.time() + 1.5
    names = sorted(p.communicate(timeout=60)[0].strip() for p in [driver(runs, start) for _ in range(4)])
    base = "round_a-20261205-192122"
    assert names == sorted([base, f"{base}-2", f"{base}-3", f"{base}-4"]), names
    # a name on storage is taken too (a sweep started from another machine), and claims are per storage folder
    (runs / f"{base}-5").mkdir(parents=True)
    assert driver(runs).communicate(timeout=60)[0].strip() == f"{base}-6"
    assert driver(tmp_path / "other").communicate(timeout=60)[0].strip() == base
    assert latest_sweep([*names, f"{base}-10", "round_a-20261205-192121-11", "round_a-final"], "round_a") \
        == f"{base}-10"


def _racer(storage: str, barrier, wins, delay_s: float) -> None:
    """A driver process taking the lease of sweep "race" at the barrier; a delay after its look makes the race
    certain (both look before either writes). It holds a won lease a moment, so the other looks while it is live."""
    import ups.tune.driver_lease as dl

    looked = dl.check_no_live_driver

    def slow_look(*a, **k):
        looked(*a, **k)
        time.sleep(delay_s)

    dl.check_no_live_driver = slow_look
    barrier.wait()
    try:
        lease = DriverLease(storage, None, "race", storage).acquire()
    except ConfigError:
        return
    wins.put(os.getpid())
    time.sleep(2 * delay_s)
    lease.release()


def test_two_drivers_started_at_once_get_one_lease(tmp_path: Path, monkeypatch) -> None:
    """Both looked, found no live lease, and both wrote theirs (2 of 10 tries in the resilience trial): the look
    and the write are one step now (a lock of this machine around them), whose lock file goes afterwards (one
    per sweep gathered in /tmp)."""
    import multiprocessing as mp
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the lock is; the forked racers inherit it

    ctx = mp.get_context("fork")
    for _ in range(2):
        barrier, wins = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_racer, args=(str(tmp_path / "runs"), barrier, wins, 0.5)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        got = []
        while not wins.empty():
            got.append(wins.get())
        assert len(got) == 1, got
        assert not list(temp.glob("ups-driver-lease-*")), list(temp.iterdir())
