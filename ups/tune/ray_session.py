"""The Ray side of a sweep: the address check that fails in seconds, ``ray.init`` (local or a cluster), and
how many trials run at once on the CPUs and GPUs found."""
from __future__ import annotations

import os
import socket
from typing import Any

from ups.config import ConfigError
from ups.tune.concurrency import ADAPTIVE, node_slots
from ups.tune.ray_address import gcs_problem
from ups.tune.stop_signals import log as _log
from ups.tune.sweep_config import SweepConfig


class RayConnectError(ConfigError):
    """RAY_ADDRESS / ray_address points at no reachable cluster."""


def check_ray_address(address: str, timeout: float) -> None:
    """Fail in seconds, with the fix, when a remote Ray address does not answer."""
    if address in ("", "auto", "local"):
        return
    scheme = address.split("://", 1)[0].lower() if "://" in address else ""
    if scheme in ("http", "https"):  # the shell's RAY_ADDRESS for `ray job submit`, not one a driver can connect to
        raise RayConnectError(
            f"RAY_ADDRESS '{address}' is the dashboard's Jobs API address (what `ray job submit` takes), not one a "
            f"driver connects to. Fix: submit the sweep as a job (`ray job submit --address {address} --working-dir . "
            f"-- python sweeps/<round>.py …`: Ray gives the job its own RAY_ADDRESS), or run it here against the "
            f"head's GCS (RAY_ADDRESS=<head>:6379), or unset RAY_ADDRESS for a local instance")
    if scheme == "ray":  # Ray Client: Tune's loop would run in an actor on the head, this driver's rest here
        raise RayConnectError(
            f"RAY_ADDRESS '{address}' is a Ray Client address: under Ray Client, Tune runs the sweep's loop in an "
            f"actor on the head, so its leaderboard rows, W&B run and Optuna study would be written on the head's "
            f"disk while this process writes the promotion and report here, and a resume=true cannot restore it. "
            f"Fix: run the driver on the cluster: `ray submit cluster.yaml sweeps/<round>.py … ray_address=auto`, or "
            f"`ray job submit --address http://<head>:8265 --working-dir . -- python sweeps/<round>.py …`, or join "
            f"the head's GCS from inside its network (RAY_ADDRESS=<head>:6379)")
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:6379, as Ray writes IPv6
    if not host or not port.isdigit():
        raise RayConnectError(f"RAY_ADDRESS '{address}' is not host:port. Fix: e.g. RAY_ADDRESS=10.0.0.5:6379, "
                              f"or unset RAY_ADDRESS to run on a local Ray instance")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise RayConnectError(
            f"Ray cluster at '{address}' (RAY_ADDRESS / ray_address) is unreachable within {timeout:g}s: {e}. "
            f"Fix: start it (`ray up cluster.yaml` or `ray start --head`), check host and port (the GCS's, 6379 by "
            f"default) and the security group, or unset RAY_ADDRESS to run on a local Ray instance") from None
    if "://" in address:  # another scheme Ray knows (a plug-in's): ray.init decides
        return
    problem = gcs_problem(hostport, timeout)
    if problem:
        raise RayConnectError(
            f"RAY_ADDRESS '{address}': {problem}. Fix: point RAY_ADDRESS / ray_address at the head's GCS port "
            f"(`ray start --head` prints it; 6379 by default, not the dashboard's 8265 or Ray Client's 10001), or "
            f"unset RAY_ADDRESS to run on a local Ray instance")


def connect_ray(s: SweepConfig) -> bool:
    """Reuse an initialized Ray, connect to RAY_ADDRESS, or start a local instance; True if we did."""
    import ray

    if ray.is_initialized():
        return False
    address = s.ray_address or os.environ.get("RAY_ADDRESS", "")
    check_ray_address(address, s.connect_timeout_s)
    from ups.tune.stop_signals import kept_sigterm

    with kept_sigterm():
        init_ray(s, address)
    return True


def init_ray(s: SweepConfig, address: str) -> None:
    import ray

    if address and address != "local":
        try:
            ray.init(address=address, log_to_driver=s.verbose >= 2)
        except (ConnectionError, RuntimeError, ValueError) as e:  # ValueError: an address Ray cannot parse
            first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
            raise RayConnectError(
                f"could not connect to the Ray cluster at '{address}' (RAY_ADDRESS / ray_address): {first[:300]}. "
                f"Fix: check that the cluster is up (`ray status` on the head) and that the address is the head's "
                f"GCS host:port (or `auto` on the head itself), or unset RAY_ADDRESS to run locally") from None
    else:  # "local": a new local instance even where RAY_ADDRESS names a cluster, with ray_num_cpus as without it
        ray.init(address="local" if address else None, num_cpus=s.ray_num_cpus or None, include_dashboard=False,
                 log_to_driver=s.verbose >= 2, configure_logging=False)


def concurrency(s: SweepConfig, remote: bool) -> int:
    """Trials at a time: ``max_concurrent`` when set; on a remote cluster ``ADAPTIVE`` (the limit follows
    the cluster as it scales, ``ups.tune.concurrency``); on the local instance what its resources hold."""
    import ray

    if remote:
        return s.max_concurrent or ADAPTIVE
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    if s.resources.gpu > 0 and gpus == 0:
        raise ConfigError(f"resources.gpu={s.resources.gpu} but this Ray instance has no GPUs. Fix: use "
                          f"profile=smoke / resources.gpu=0 on CPU, or connect to a GPU cluster (RAY_ADDRESS)")
    check_local_fit(s, cpus, gpus)
    return local_concurrency(s, cpus, gpus)


def local_concurrency(s: SweepConfig, cpus: float, gpus: float) -> int:
    """``max_concurrent``, or the trials one node of ``cpus``/``gpus`` holds by every resource a trial asks
    for: 16 CPUs and 1 GPU hold 4 trials of ``{cpu: 2, gpu: 0.25}``, 4 CPUs and 1 GPU only 2 (a limit of 4
    there would keep 2 suggestions waiting for CPUs, each made before the results it could have used)."""
    return s.max_concurrent or max(1, node_slots({"CPU": cpus, "GPU": gpus}, per_trial_resources(s)))


def check_local_fit(s: SweepConfig, cpus: float, gpus: float) -> None:
    """Refuse a trial larger than the local Ray instance: Tune would keep every trial PENDING forever
    (``resources.cpu=3`` on a 2-core machine waited with no error).  A cluster may still add bigger nodes."""
    for key, want, have, unit in (("cpu", s.resources.cpu, cpus, "CPUs"), ("gpu", s.resources.gpu, gpus, "GPUs")):
        if want > have and (key == "cpu" or have > 0):
            fits = f"resources.{key}={have:g} or less" if have >= 1 else f"resources.{key}={have:g}"
            raise ConfigError(f"resources.{key}={want:g} per trial, but the local Ray instance has {have:g} {unit} "
                              f"({'ray_num_cpus / ' if key == 'cpu' else ''}this machine's): no trial could ever start, "
                              f"and Tune would wait with every trial PENDING. Fix: {fits}, or connect to a cluster "
                              f"with bigger nodes (RAY_ADDRESS=<head>:6379)")


def round_concurrency(s: SweepConfig, max_conc: int) -> int:
    """The round's own searcher limit: ``max_conc``, except under PBT, where it is ``ADAPTIVE`` (no limit
    on a random / grid searcher).  PBT's population (``num_samples``) must exist from the start, so the
    resources decide how many train at once and PBT pauses the others at its perturbation steps; a
    searcher's limit would leave no trial pending and split the population into waves that never meet.
    The promotion's retrains (FIFO) keep ``max_conc``."""
    if s.scheduler.name != "pbt":
        return max_conc
    if s.max_concurrent:
        who = (f"its {s.num_samples} trials (a population of {s.num_samples - 1} and the reference trial, which "
               f"PBT leaves out of it) take" if s.searcher.start_at_reference and s.num_samples > 1
               else f"its population of {s.num_samples} takes")
        _log(f"scheduler=pbt: max_concurrent={s.max_concurrent} is not applied to the round; {who} turns on what the "
             f"resources hold (resources.cpu / resources.gpu)")
    return ADAPTIVE


def per_trial_resources(s: SweepConfig) -> dict[str, float]:
    return {"CPU": s.resources.cpu, "GPU": s.resources.gpu}


def empty_cluster_text(per_trial: dict[str, float], nodes: list[dict[str, Any]] | None = None) -> str:
    """What a trial asks for against what the cluster's largest alive nodes have: ``1 CPU and 0.25 GPU per trial;
    its nodes have at most 2 CPUs and 0 GPUs``."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    have = {k: max((float(r.get(k, 0)) for r in alive), default=0.0) for k in per_trial}
    ask = " and ".join(f"{v:g} {k}" for k, v in per_trial.items() if v > 0)
    return f"{ask} per trial; its nodes have at most " + " and ".join(f"{v:g} {k}s" for k, v in have.items())
