"""Kill -9 the sweep driver mid-sweep (S3 storage on moto_server), resume with resume=true.

The real entry point (``sweeps/round_a.py``) runs in a subprocess with its own local Ray instance;
once a checkpoint has landed in the bucket and before the trials have finished, the driver gets
SIGKILL.  The resumed run restores the Tune state from S3, every trial finishes, and the leaderboard
has exactly one complete row per trial.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from ups.leaderboard import read_leaderboard

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 2


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (Linux /proc), so leftovers of a killed driver can be ended by id."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Ray's agents beside the raylet: idle, and after a SIGKILL of the driver they outlive their raylet by 20 s and
# more (they notice its end late), so waiting for them to exit on their own only waited the timeout out
_RAY_AGENTS = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")


def _agent(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(_RAY_AGENTS)
    except OSError:
        return False


def _end(pids: list[int], timeout: float = 15.0) -> None:
    """Give ``pids`` up to ``timeout`` to exit on their own, then SIGKILL those left; Ray's idle agents are not
    waited for once every other process has gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) and not _agent(p) for p in pids):
        time.sleep(0.2)
    for p in pids:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _keys(client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _signal_when(driver: subprocess.Popen, log: Path, ready: Callable[[], bool], sig: int, waiting_for: str,
                 wait_s: float = 30.0) -> int:
    """Once ``ready()``, send ``sig`` to the driver alone and wait for it to exit; then end whatever it
    spawned (its Ray processes) by id.  Returns the log's length when the signal was sent (for ``_said``)."""
    spawned: list[int] = []
    signalled_at = -1
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert driver.poll() is None, (f"driver exited (rc={driver.returncode}) before it got the signal:\n"
                                           + log.read_text()[-3000:])
            assert time.monotonic() < deadline, f"{waiting_for}: not in time"
            time.sleep(0.3)
        spawned = _children(driver.pid)
        os.kill(driver.pid, sig)
        signalled_at = len(log.read_text(errors="replace"))
        driver.wait(timeout=wait_s)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _end(spawned)
    return signalled_at


def _said(out: str, signalled_at: int = -1) -> str:
    """For a failure message: the driver's own messages (and any traceback or swallowed exception), where the
    signal was sent, and the log's end; the rich table at the end otherwise hides what happened before it."""
    mark = f"--- the signal was sent here (the log then {signalled_at} characters long) ---"
    head = out if signalled_at < 0 else f"{out[:signalled_at]}{mark}\n{out[signalled_at:]}"
    keep = [line for line in head.splitlines()
            if line.startswith(("[ups sweep]", "---", "Traceback", "Exception ignored", "KeyboardInterrupt"))]
    return "\n".join(keep)[-3000:] + "\n--- log end ---\n" + out[-1500:]


def _driver_env() -> dict[str, str]:
    """The drivers' environment: never a cluster found on the machine (``ray_address=local`` too)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1")
    return env


def _stoppable_round(tmp_path: Path, cache_dir: Path, name: str, lb: Path, *extra: str,
                     epochs: int = 8) -> list[str]:
    """round_a on the tiny data, FIFO, no gates, ``epochs`` operator epochs (~0.4 s each here) checkpointed each
    epoch, the top trial promoted regardless of gates: long enough to be stopped mid-trial."""
    return [sys.executable, str(ROOT / "sweeps" / "round_a.py"), *extra, "ray_address=local", "baselines=false",
            "wandb.enabled=false", "gates.enabled=false", "scheduler.name=fifo", f"storage_path={tmp_path / 'runs'}",
            f"name={name}", f"leaderboard={lb}", "promotion.top_k=1", "promotion.force=true",
            f"champion={tmp_path / 'champ.json'}", "write_report=false", "verbose=0", "data.n=64",
            "data.resolution=256", f"data.cache_dir={cache_dir}", "stages.autoencoder.epochs=1",
            f"stages.operator.epochs={epochs}", "training.checkpoint_every=1"]


def _resume_ok(args: list[str], tmp_path: Path, env: dict[str, str], lb: Path, name: str):
    """The same command with resume=true (log: driver2.log) must end with exit 0; the experiment's rows."""
    with open(tmp_path / "driver2.log", "wb") as log:
        resumed = subprocess.run(args + ["resume=true"], cwd=tmp_path, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, timeout=400)
    assert resumed.returncode == 0, (tmp_path / "driver2.log").read_text()[-4000:]
    rows = read_leaderboard(lb)
    return rows[rows["experiment"] == name]


@pytest.mark.slow
def test_driver_killed_mid_sweep_resumes_from_s3(tmp_path, s3_client, s3_bucket, tiny_data, tiny_cache_dir):
    name = f"fault-driver-{uuid.uuid4().hex[:6]}"
    lb = tmp_path / "leaderboard.csv"
    args = [sys.executable, str(ROOT / "sweeps" / "round_a.py"),
            f"num_samples={N_TRIALS}", "max_concurrent=2", "ray_address=local", "baselines=false",
            "promotion.top_k=0", "wandb.enabled=false", "gates.enabled=false", "scheduler.name=fifo",
            "searcher.name=random", f"storage_path=s3://{s3_bucket}/sweeps", f"name={name}",
            f"leaderboard={lb}", f"report_dir={tmp_path / 'reports'}", f"champion={tmp_path / 'champ.json'}",
            "write_report=false", "verbose=0", "data.n=64", "data.resolution=256", f"data.cache_dir={tiny_cache_dir}",
            "stages.autoencoder.epochs=1", "stages.operator.epochs=3", "training.checkpoint_every=1"]
    env = _driver_env()  # with ray_address=local: a fresh Ray instance owned by this driver
    prefix = f"sweeps/{name}/"

    with open(tmp_path / "driver1.log", "wb") as log:
        driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    seen: dict[str, object] = {}

    def checkpoint_on_s3() -> bool:
        if not any("/checkpoint_" in k for k in _keys(s3_client, s3_bucket, prefix)):
            return False
        seen["done_before"] = read_leaderboard(lb) if lb.exists() else None
        return True

    # the driver only gets SIGKILL: its Ray processes fate-share with it
    _signal_when(driver, tmp_path / "driver1.log", checkpoint_on_s3, signal.SIGKILL, "a checkpoint on S3")
    done_before = seen["done_before"]
    assert driver.returncode == -signal.SIGKILL
    finished_at_kill = 0 if done_before is None else int((done_before["experiment"] == name).sum())
    assert finished_at_kill < N_TRIALS, "the driver was killed after the sweep had already finished"
    keys = _keys(s3_client, s3_bucket, prefix)
    assert any(k.endswith("tuner.pkl") for k in keys) and any("experiment_state" in k for k in keys)
    assert f"{prefix}ups_sweep.json" in keys  # what resume=true checks the resuming command against
    assert f"{prefix}ups_space.yaml" in keys  # the space the sweep started in, to resume in after an edit

    # resume: same command + resume=true restores the latest experiment from S3
    with open(tmp_path / "driver2.log", "wb") as log:
        resumed = subprocess.run(args + ["resume=true"], cwd=tmp_path, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, timeout=400)
    out = (tmp_path / "driver2.log").read_text()
    assert resumed.returncode == 0, out[-4000:]
    assert f"resuming s3://{s3_bucket}/sweeps/{name}" in out

    rows = read_leaderboard(lb)
    rows = rows[(rows["experiment"] == name) & (rows["kind"] == "trial")]
    assert len(rows) == N_TRIALS and rows["run_id"].is_unique, rows[["run_id", "status"]]
    # complete: every trial reached its final evaluation (gates are off, so none was cut short)
    assert set(rows["status"]) == {"completed"}, rows[["run_id", "status", "stop_reason"]]  # gates off, FIFO: all run to the end
    assert rows["val_nrmse"].notna().all() and rows["nrmse"].notna().all()

    # the bucket holds the Tune state, every trial's results and its checkpoints
    keys = _keys(s3_client, s3_bucket, prefix)
    trials = {k[len(prefix):].split("/")[0] for k in keys if k[len(prefix):].startswith("trial_")}
    assert len(trials) == N_TRIALS
    for t in trials:
        assert f"{prefix}{t}/result.json" in keys
        assert any(k.startswith(f"{prefix}{t}/checkpoint_") and k.endswith("checkpoint.pt") for k in keys)


def _concurrent(exp: Path, since: float, until: float) -> list[tuple[str, str]]:
    """Pairs of trials whose reports between ``since`` and ``until`` (epoch s) interleave: one reported before the
    other's last report and after its first, by their result.json timestamps (whole seconds, taken as each trial
    reports).  One trial at a time cannot: FIFO never pauses a trial, and the next one starts after the last report
    of the one before, so the two spans share one second at most.  (The driver copies result.json to the storage
    folder in bursts, so the lines are read when it has ended, not as they come.)"""
    spans = {}
    for f in exp.glob("trial_*/result.json"):
        ts = [t for line in f.read_text().splitlines() if line.strip()
              if since <= (t := json.loads(line)["timestamp"]) <= until]
        if ts:
            spans[f.parent.name] = (min(ts), max(ts))
    names = sorted(spans)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if min(spans[a][1], spans[b][1]) > max(spans[a][0], spans[b][0])]


@pytest.mark.slow
def test_a_resumed_sweep_takes_the_new_concurrency_and_can_be_stopped_again(tmp_path, tiny_data, tiny_cache_dir):
    """A sweep stopped (SIGTERM), resumed with another max_concurrent, stopped again (Ctrl-C), resumed again.
    Each stop: Tune saves its state, the trials it left running are recorded as interrupted (not as early
    stops), no promotion runs on the unfinished round, the driver says how to resume, gives its lease up and
    exits 130; while the first driver runs, a second one with resume=true is refused (its lease).
    Tune restores the search algorithm and callbacks pickled when the sweep started; the resumed sweep must
    run the resuming command's concurrency (two trials at once, not the original one) and its own
    leaderboard callback, so that the second stop is seen as one.
    The last resume finishes every trial, one row each, and promotes."""
    name = f"again-{uuid.uuid4().hex[:6]}"
    lb = tmp_path / "leaderboard.csv"
    # 16 epochs: the trial the first stop cut has ~6 s of them left, in which the resumed sweep's second trial starts
    # (~2 s) and reports beside it
    args = _stoppable_round(tmp_path, tiny_cache_dir, name, lb, "num_samples=3", "max_concurrent=1",
                            "searcher.name=optuna", epochs=16)
    env = _driver_env()
    exp = tmp_path / "runs" / name
    log1, log2 = tmp_path / "driver1.log", tmp_path / "driver-again.log"

    with open(log1, "wb") as log:
        driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    refuser: list[subprocess.Popen] = []

    def refused_then_checkpointed() -> bool:
        """Once the driver holds its lease, the same command with resume=true runs beside it and must be refused
        (it would train the same trials into the same folder); the signal waits for that refusal and a trial's
        third checkpoint, no longer: the trial stopped must have epochs left for the resumed sweep to run."""
        if not refuser:
            if (exp / "ups_driver.json").exists():
                with open(tmp_path / "refused.log", "wb") as out:
                    refuser.append(subprocess.Popen(args + ["resume=true"], cwd=tmp_path, env=env, stdout=out,
                                                    stderr=subprocess.STDOUT))
            return False
        return refuser[0].poll() is not None and bool(list(exp.glob("trial_*/checkpoint_000002")))

    try:
        at = _signal_when(driver, log1, refused_then_checkpointed, signal.SIGTERM, "the refusal and a trial's "
                          "third checkpoint", wait_s=120)
    finally:
        for r in refuser:
            if r.poll() is None:
                r.kill()
                r.wait()
    out, refused = log1.read_text(), (tmp_path / "refused.log").read_text()
    assert refuser[0].returncode != 0 and f"is still running: driver pid {driver.pid} on this machine" in refused, \
        refused[-3000:]
    assert driver.returncode == 130, _said(out, at)
    assert not (exp / "ups_driver.json").exists()  # a stopped driver gives its lease up
    assert "interrupted: " in out and "resume=true" in out and "promotion: not run" in out, out[-3000:]  # SIGTERM
    first = {p.parent.name for p in exp.glob("trial_*/checkpoint_000002")}

    resumed_at = time.time()
    with open(log2, "wb") as log:
        driver = subprocess.Popen(args + ["max_concurrent=2", "resume=true"], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    # trials seen with a second checkpoint, kept across polls: retention (2 kept) removes checkpoint_000001 once a
    # trial writes its fourth, so the two need not hold it at the same moment
    seen: set[str] = set()

    def two_more_trials_checkpointed() -> bool:
        seen.update(p.parent.name for p in exp.glob("trial_*/checkpoint_000001"))
        return len(seen - first) >= 2

    at = _signal_when(driver, log2, two_more_trials_checkpointed, signal.SIGINT, "two more trials' second "
                      "checkpoints", wait_s=120)
    stopped_at = time.time()
    out = log2.read_text()
    assert driver.returncode == 130, _said(out, at)
    assert "interrupted: " in out and "promotion: not run" in out, out[-3000:]
    # the command that resumes it, printed whole: this one's arguments, resume=true and the sweep's name
    again = [a for a in args[2:] if not a.startswith("name=")] + ["max_concurrent=2", "resume=true", f"name={name}"]
    assert f" {shlex.join([args[1], *again])}\n" in out.split("To finish it: ", 1)[-1], out[-3000:]
    assert not (tmp_path / "champ.json").exists() and not (exp / "ups_driver.json").exists()
    rows = read_leaderboard(lb)
    rows = rows[rows["experiment"] == name]
    assert set(rows["status"]) <= {"completed", "interrupted"}, rows[["run_id", "status", "stop_reason"]]
    cut = rows[rows["status"] == "interrupted"]
    assert len(cut) >= 1 and cut["stop_reason"].str.startswith("sweep interrupted at iteration").all(), cut

    rows = _resume_ok(args + ["max_concurrent=2"], tmp_path, env, lb, name)
    rows = rows[rows["kind"] == "trial"]
    assert len(rows) == 3 and rows["run_id"].is_unique and set(rows["status"]) == {"completed"}, rows
    assert (tmp_path / "champ.json").exists()
    # judged on the first resume alone: it restored a sweep that ran one trial at a time; the second restores one
    # that already ran two (and trials interrupted together, restored as they were, not suggested again)
    assert _concurrent(exp, int(resumed_at), stopped_at), \
        "the resumed sweep ran one trial at a time, as the sweep it resumed did"


@pytest.mark.slow
def test_stop_during_promotion_keeps_the_round_and_resume_redoes_it(tmp_path, tiny_data, tiny_cache_dir):
    """Ctrl-C after Tune ended, during the promotion's full-eval (the driver's own work): a clear message and
    exit 130, not a traceback; every trial's row kept, the champion untouched; resume=true redoes the
    promotion without running a trial again.  SIGINT is the signal Tune leaves its own handler on
    (ray-project/ray#37737); SIGTERM there takes the same handler (``stop_signals_as_ctrl_c``), checked
    in-process by tests/test_stop_signals.py, and SIGTERM mid-Tune end to end by the test above."""
    sig = signal.SIGINT
    name = f"promo-{uuid.uuid4().hex[:6]}"
    lb = tmp_path / "leaderboard.csv"
    # eval.max_samples=1 keeps the trials' own eval quick; the heavier TTC makes the full-eval of two
    # checkpoints on the whole test split last ~10 s, a window the signal cannot miss
    args = [sys.executable, str(ROOT / "sweeps" / "round_a.py"),
            "num_samples=3", "max_concurrent=2", "ray_address=local", "baselines=false",
            "wandb.enabled=false", "gates.enabled=false", "scheduler.name=fifo", "searcher.name=random",
            f"storage_path={tmp_path / 'runs'}", f"name={name}", f"leaderboard={lb}", "promotion.top_k=2",
            "promotion.force=true", f"champion={tmp_path / 'champ.json'}", "write_report=false", "verbose=0",
            "data.n=64", "data.resolution=256", f"data.cache_dir={tiny_cache_dir}", "stages.autoencoder.epochs=1",
            "stages.operator.epochs=4", "eval.max_samples=1", "ttc.threshold=0", "ttc.candidates=16",
            "ttc.beam_width=4", "ttc.max_evaluations=1000"]
    env = _driver_env()
    log1 = tmp_path / "driver1.log"

    with open(log1, "wb") as log:
        driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    at = _signal_when(driver, log1, lambda: "promotion: full-eval of" in log1.read_text(), sig, "the full-eval")
    out = log1.read_text()
    assert driver.returncode == 130, _said(out, at)
    assert "interrupted during the promotion's full-eval" in out and "resume=true" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    rows = read_leaderboard(lb)
    rows = rows[rows["experiment"] == name]
    trials = rows[rows["kind"] == "trial"]
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}, trials[["run_id", "status"]]
    assert not (rows["kind"] == "full_eval").any()  # the cut full-eval wrote nothing half-done
    assert not (tmp_path / "champ.json").exists()

    rows = _resume_ok(args, tmp_path, env, lb, name)
    trials = rows[rows["kind"] == "trial"]
    assert len(trials) == 3 and trials["run_id"].is_unique and set(trials["status"]) == {"completed"}
    fulls = rows[rows["kind"] == "full_eval"].set_index("run_id")
    assert len(fulls) == 2
    assert (tmp_path / "champ.json").exists()
    champion = json.loads((tmp_path / "champ.json").read_text())

    # a resume of the finished sweep keeps the full-evals it has: the same rows, evaluated once
    rows = _resume_ok(args, tmp_path, env, lb, name)
    out = (tmp_path / "driver2.log").read_text()
    assert "on the leaderboard already" in out and "promotion: full-eval of" in out, out[-3000:]
    assert f"resume: every trial of {name} had finished (3 of 3): none trains again" in out, out[-3000:]
    again = rows[rows["kind"] == "full_eval"].set_index("run_id")
    assert sorted(again.index) == sorted(fulls.index)
    assert (again.loc[fulls.index, "timestamp"] == fulls["timestamp"]).all()
    assert json.loads((tmp_path / "champ.json").read_text())["run_id"] == champion["run_id"]


@pytest.mark.slow
def test_a_stop_signal_that_also_reaches_rays_gcs_ends_the_driver_in_seconds(tmp_path, tiny_data, tiny_cache_dir):
    """``timeout``, ``scancel`` and ``systemctl stop`` signal the driver's whole process group, Ray's own GCS and
    raylet with it.  The GCS stops serving at once, and Tune's clean-up then waited 60 s for it and aborted
    the driver with a GCS error.  Now the driver ends as soon as Tune has saved its state, with exit 130 and
    the fix; the saved state is one a resume restores.  The GCS and the driver get the SIGTERM here, not the
    whole group: with the raylet stopped too, Ray's core worker sometimes notices first (1 run in 8) and ends
    the driver itself at once with exit 1, a race this test would not decide."""
    from ray.tune import Tuner

    name = f"pgroup-{uuid.uuid4().hex[:6]}"
    lb = tmp_path / "leaderboard.csv"
    args = _stoppable_round(tmp_path, tiny_cache_dir, name, lb, "num_samples=2", "max_concurrent=2",
                            "searcher.name=random", epochs=20)  # stopped long before the end: room for a slow start
    exp = tmp_path / "runs" / name
    log_path = tmp_path / "driver1.log"
    with open(log_path, "wb") as log:  # its own process group, as under timeout or a batch job
        driver = subprocess.Popen(args, cwd=tmp_path, env=_driver_env(), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    spawned: list[int] = []
    try:
        deadline = time.monotonic() + 240
        # both trials have reported to the driver (the rows below are for trials it saw: on a loaded box the
        # second one's actor can start seconds late, and its first report was still in flight at the stop)
        while not (list(exp.glob("trial_*/checkpoint_000002"))
                   and sum(f.stat().st_size > 0 for f in exp.glob("trial_*/result.json")) == 2):
            assert driver.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "a trial's third checkpoint and both trials' reports: not in time"
            time.sleep(0.3)
        spawned = _children(driver.pid)
        gcs = [p for p in spawned if b"gcs_server" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(gcs) == 1, spawned
        sent = time.time()
        os.kill(gcs[0], signal.SIGTERM)
        os.kill(driver.pid, signal.SIGTERM)
        driver.wait(timeout=40)  # Ray's own wait for a dead GCS alone is 60 s
        took = time.time() - sent
        print(f"driver ended {took:.1f} s after the SIGTERM to it and the GCS")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _end(spawned, timeout=1.0)  # the raylet outlives a driver whose GCS is gone: nothing to wait for
    out = log_path.read_text()
    assert driver.returncode == 130, _said(out)
    assert "SIGTERM also stopped the local Ray instance" in out and "resume=true" in out, out[-3000:]
    assert "Failed to connect to GCS" not in out, out[-3000:]
    state = max(exp.glob("experiment_state-*.json"), key=lambda f: f.stat().st_mtime)
    assert state.stat().st_mtime >= sent, "Tune's final save of the state did not happen"
    assert Tuner.can_restore(str(exp)), f"not restorable after {took:.0f} s: {sorted(p.name for p in exp.iterdir())}"
    # the unfinished trials are recorded and the leaderboard printed, as on Tune's own Ctrl-C path (they were not)
    rows = read_leaderboard(lb)
    mine = rows[(rows["experiment"] == name) & (rows["kind"] == "trial")]
    assert len(mine) == 2 and set(mine["status"]) == {"interrupted"}, mine[["run_id", "status", "stop_reason"]]
    assert mine["stop_reason"].str.contains("resume=true").all() and mine["val_nrmse"].notna().all()
    assert f"Leaderboard — {name}" in out, out[-3000:]
    # the trials' scratch (trainer checkpoints, stage cache) goes too: it stayed in /tmp/ups-trials at each such stop.
    # Its folder may come back empty: the trial workers outlive the driver here (they get no signal) and write on
    scratch = [f for f in (Path(tempfile.gettempdir()) / "ups-trials").glob(f"{name}*/**/*") if f.is_file()]
    assert not scratch, scratch
