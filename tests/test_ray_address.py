"""RAY_ADDRESS preflight: an open port that is not a Ray GCS is refused in seconds, a real GCS passes."""
from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from ups.tune.ray_session import RayConnectError, check_ray_address


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word (Redis-like, wrong port)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    server.close()


def test_open_port_without_a_ray_gcs_is_refused_in_seconds(silent_port: int) -> None:
    address = f"127.0.0.1:{silent_port}"
    t0 = time.monotonic()
    with pytest.raises(RayConnectError) as e:
        check_ray_address(address, 2.0)
    seconds = time.monotonic() - t0
    msg = str(e.value)
    assert address in msg and "no Ray GCS answered within 2s" in msg
    assert "6379" in msg and "unset RAY_ADDRESS" in msg
    assert seconds < 10, seconds  # ray.init itself would retry for 40-80 s, then raise a traceback


def test_a_real_ray_gcs_passes_the_preflight(ray_session: None) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    t0 = time.monotonic()
    check_ray_address(address, 5.0)  # raises if the probe cannot tell a live GCS from a dead port
    assert time.monotonic() - t0 < 5


def test_a_bracketed_ipv6_address_is_probed_not_called_unreachable() -> None:
    """[::1]:6379 (how Ray writes an IPv6 address) was passed to the socket with its brackets: "unreachable"."""
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.listen(4)
    try:
        with pytest.raises(RayConnectError) as e:
            check_ray_address(f"[::1]:{server.getsockname()[1]}", 2.0)
        assert "unreachable" not in str(e.value) and "no Ray GCS answered" in str(e.value), str(e.value)
    finally:
        server.close()


def test_the_jobs_api_address_is_refused_with_how_to_submit(silent_port: int) -> None:
    """RAY_ADDRESS=http://head:8265 (what a shell sets for `ray job submit`, as docs/CLUSTER.md does) given to a
    sweep run here ended, after 6 s, in a raw traceback of Ray's ValueError 'Invalid Ray address'. It is refused
    at once, even where the port answers (a dashboard), with both ways to run the sweep."""
    for address in (f"http://127.0.0.1:{silent_port}", "https://head.example:8265"):
        t0 = time.perf_counter()
        with pytest.raises(RayConnectError) as e:
            check_ray_address(address, 5.0)
        assert time.perf_counter() - t0 < 1.0  # no connection tried
        msg = str(e.value)
        assert f"RAY_ADDRESS '{address}' is the dashboard's Jobs API address" in msg, msg
        assert f"ray job submit --address {address} --working-dir ." in msg and "RAY_ADDRESS=<head>:6379" in msg


def test_a_ray_client_address_is_refused_with_where_to_run_the_driver() -> None:
    """Under Ray Client (ray://head:10001) Tune runs its loop in an actor on the head: the leaderboard rows, the
    W&B run and the Optuna study were written on the head's disk, the promotion and report on the laptop, and the
    restore reads Tune's local tuner, which a client does not have. Refused before any connection."""
    t0 = time.perf_counter()
    with pytest.raises(RayConnectError) as e:
        check_ray_address("ray://127.0.0.1:9", 5.0)
    assert time.perf_counter() - t0 < 1.0
    msg = str(e.value)
    assert "is a Ray Client address" in msg and "ray submit cluster.yaml" in msg and "ray job submit" in msg, msg


def test_a_ray_job_writing_into_its_temporary_copy_is_refused_before_any_compute(tmp_path, monkeypatch) -> None:
    """`ray job submit --working-dir . -- python sweeps/round_a.py` ran in Ray's unpacked copy of the repository
    (<session>/runtime_resources/working_dir_files/_ray_pkg_<hash>/) and wrote the leaderboard, report, champion
    and local Tune state there without a word; `ray stop` deletes that folder."""
    from ups.config import ConfigError
    from ups.tune.prepare import prepare, ray_job_copy

    copy = tmp_path / "session_2026" / "runtime_resources" / "working_dir_files" / "_ray_pkg_39c1980af4650438"
    (copy / "sweeps").mkdir(parents=True)
    assert ray_job_copy(copy / "sweeps") == copy and ray_job_copy(tmp_path) is None
    monkeypatch.chdir(copy)
    with pytest.raises(ConfigError) as e:
        prepare("round_a", [])
    msg = str(e.value)
    assert msg.startswith("leaderboard=reports/leaderboard.csv report_dir=") and "storage_path=runs/sweeps" in msg, msg
    assert f"runs as a Ray job in its temporary copy of the repository ({copy})" in msg
    assert "Fix: absolute paths outside it, e.g. leaderboard=~/ups/reports/leaderboard.csv" in msg
    assert "storage_path=s3://YOUR-BUCKET/ups/sweeps (or ~/ups/sweeps)" in msg
    # what docs/CLUSTER.md tells a job to pass: nothing inside the copy, nothing refused
    out = tmp_path / "head"
    p = prepare("round_a", [f"leaderboard={out / 'lb.csv'}", f"report_dir={out / 'reports'}",
                            f"champion={out / 'champion.json'}", f"storage_path={out / 'sweeps'}"])
    assert p.leaderboard == out / "lb.csv"


@pytest.mark.slow
def test_ray_address_local_starts_a_local_instance_with_ray_num_cpus_even_where_ray_address_is_set(tmp_path) -> None:
    """`ray_address=local ray_num_cpus=1` with RAY_ADDRESS set in the shell was passed to ray.init as an address:
    a local instance with every core and a dashboard. It now starts as an unset address does."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("from ups.tune.sweep_config import load_sweep_config\nfrom ups.tune.ray_session import init_ray\nimport ray\n"
            "s = load_sweep_config('round_a', ['ray_address=local', 'ray_num_cpus=1'])\ninit_ray(s, 'local')\n"
            "print('CPUS', ray.cluster_resources().get('CPU'))\nray.shutdown()\n")
    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:9", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0 and "CPUS 1.0" in run.stdout, (run.stdout[-2000:], run.stderr[-2000:])
    assert "View the dashboard" not in run.stdout + run.stderr
