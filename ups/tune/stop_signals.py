"""Stop signals during a sweep: SIGTERM / SIGHUP taken as Ctrl-C, and a driver whose local Ray instance the
same signal stopped ends in seconds with the fix, instead of waiting a minute on the dead GCS."""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

RAY_GONE_WAIT_S = 3.0  # how long after the signal the local GCS is watched for having stopped too
SAVE_GRACE_S = 20.0  # the most Tune gets, once the GCS is gone, to reach its clean-up (its state is saved by then)
RAY_GONE_EXIT = 130  # as for Ctrl-C
CLUSTER_LOST_EXIT = 1  # the cluster, not the user, ended the sweep
PROBE_S = 2.0  # how often a joined cluster's GCS port is tried


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped (Ctrl-C / SIGINT) with trials unfinished, after its finished results were
    written and its state saved; ``outcome`` (a ``ups.tune.summary.SweepOutcome``) holds what was done.
    Exit code 130, as for Ctrl-C. Defined here, without Ray, so that ``run_script`` can catch it before a
    sweep script imports the launcher."""

    def __init__(self, message: str, outcome: Any = None):
        super().__init__(message)
        self.outcome = outcome


class StopSignals:
    """What ``stop_signals_as_ctrl_c`` yields: the stop signals taken in its block.  A signal's handler runs wherever
    the main thread is; in a finaliser (``__del__``, a weakref callback) its ``KeyboardInterrupt`` is only printed
    ("Exception ignored in …") and the interrupted work goes on.  ``check()`` raises it again where the block's owner
    can still act on it (the promotion, before it crowns a champion)."""

    def __init__(self) -> None:
        self.taken: list[int] = []

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop signal was taken (and its interrupt lost on the way)."""
        if self.taken:
            raise KeyboardInterrupt


def log(msg: str) -> None:
    """A driver message, ``[ups sweep] …`` on stdout (the launcher's too)."""
    print(f"[ups sweep] {msg}", flush=True)


@contextmanager
def stop_signals_as_ctrl_c(into_tune: bool = True,
                           on_ray_gone: Callable[[], None] | None = None) -> Iterator[StopSignals]:
    """SIGTERM (``kill``, ``timeout``, a job scheduler, ``ray job stop``) and SIGHUP (the terminal or SSH
    session of ``ray submit`` closed) are taken as a Ctrl-C instead of killing the driver mid-step.

    ``into_tune`` (while Tune's loop runs): they take Tune's own Ctrl-C path, which saves the experiment
    state and ends the loop, and the sweep records its unfinished trials as interrupted.  Tune handles
    SIGINT and SIGUSR1 itself; these two are forwarded as SIGUSR1.  Otherwise (the driver's own work, e.g.
    the promotion's full-eval) they raise ``KeyboardInterrupt`` as SIGINT does.  A signal the process
    ignores (``nohup``) stays ignored; off the main thread nothing changes.

    On the way out the SIGINT and SIGUSR1 handlers are put back as they were: Tune installs its own and
    leaves them behind after ``fit()`` (ray-project/ray#37737), so a Ctrl-C during the promotion would
    only log Tune's "ending Ray Tune run" warning and be lost.

    Outside Tune's loop SIGINT is taken here too, and an error that comes out after a stop signal is
    raised as the ``KeyboardInterrupt`` it was: the interrupt, raised inside library code, can come out
    as another error (omegaconf's ``flag_override`` cleanup on a half-built config raises
    ``AttributeError`` over it), and a block that ends normally after a stop signal (its interrupt raised in a
    finaliser, where Python only prints it) raises it then; ``StopSignals.check`` raises it sooner.

    A signal sent to the driver's whole process group (``timeout``, ``scancel``, ``systemctl stop``) also
    stops the local Ray instance the driver started: ``watch_local_ray`` then ends the driver once Tune has
    saved its state, where Ray's clean-up would wait a minute for the dead GCS and abort; ``on_ray_gone``
    runs first (the sweep records its unfinished trials and prints its leaderboard there)."""
    stops = StopSignals()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield stops
        return
    taken = stops.taken

    def forward(signum: int, frame: Any) -> None:
        taken.append(signum)
        try:  # after SIGHUP the terminal may be gone
            log(f"{signal.Signals(signum).name}: stopping the sweep as for Ctrl-C (finished results kept, "
                 "resume=true continues)")
        except OSError:
            pass
        if not into_tune:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGUSR1)
        watch_local_ray(signal.Signals(signum).name, on_exit=on_ray_gone)

    old = {sig: h for sig in (signal.SIGINT, signal.SIGUSR1) if (h := signal.getsignal(sig)) is not None}
    for sig in (signal.SIGTERM, signal.SIGHUP, *(() if into_tune else (signal.SIGINT,))):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            old[sig] = signal.signal(sig, forward)
    try:
        yield stops
    except Exception as e:
        if into_tune or not taken:
            raise
        raise KeyboardInterrupt from e  # the stop, surfaced as another error from the code it interrupted
    else:
        if not into_tune:
            stops.check()  # a stop whose interrupt a finaliser swallowed: the block ended, the stop still stands
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _local_gcs() -> tuple[Any, str] | None:
    """(GCS process, its host:port) of the local Ray instance this driver started; None when the driver joined
    a cluster (whose processes it does not own) or Ray is not started."""
    try:
        import ray

        node = ray._private.worker._global_node  # Ray 2.60: the node this driver started or joined
        infos = node.all_processes.get("gcs_server", []) if node is not None else []
        return (infos[0].process, str(node.gcs_address)) if infos else None
    except (ImportError, AttributeError):
        return None


def gcs_gone(process: Any, address: str) -> bool:
    """Whether the local GCS has stopped serving: on SIGTERM it closes its port at once and lingers a while, so
    a refused connection tells, not only the process's exit."""
    if process.poll() is not None:
        return True
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout or another network error says nothing either way
        return False
    return False


def in_tune_cleanup(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs Tune's end-of-run clean-up (Ray 2.60: ``TuneController.cleanup``, which comes
    right after the final save of the experiment state)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "cleanup" and frame.f_code.co_filename.endswith("tune_controller.py"):
            return True
        frame = frame.f_back
    return False


def watch_local_ray(signame: str, wait_s: float = RAY_GONE_WAIT_S, grace_s: float = SAVE_GRACE_S,
                    on_exit: Callable[[], None] | None = None) -> None:
    """After a stop signal: if the GCS of the local Ray instance stops within ``wait_s`` (the signal went to the
    whole process group), end the driver once Tune is in its clean-up (its state saved), at most ``grace_s``
    later, after ``on_exit`` (what needs no Ray: the leaderboard's file).  Ray's clean-up would otherwise wait
    60 s for the dead GCS and abort the driver with a GCS error."""
    gcs = _local_gcs()
    if gcs is None:
        return
    main = threading.main_thread()

    def watch() -> None:
        deadline = time.monotonic() + wait_s
        while not gcs_gone(*gcs):
            if time.monotonic() > deadline:
                return  # Ray is alive: Tune's own Ctrl-C path ends the sweep
            time.sleep(0.1)
        try:  # said at once: when the raylet's end reaches Ray's core worker first, Ray ends the driver itself
            log(f"{signame} also stopped the local Ray instance (it went to the whole process group: timeout, "
                "scancel, systemctl stop …), so the driver ends as soon as Tune has saved its state, with the "
                "unfinished trials recorded as interrupted: run the same command with resume=true to finish the "
                "sweep. To stop the driver alone, signal its pid (kill <pid>, timeout --foreground …)")
        except OSError:
            pass
        until = time.monotonic() + grace_s
        while not in_tune_cleanup(main) and time.monotonic() < until:
            time.sleep(0.2)
        if on_exit is not None:
            try:
                on_exit()
            except Exception as e:  # the exit must happen: what this could not write, resume=true rewrites
                try:
                    log(f"could not record the unfinished trials ({type(e).__name__}: {e}); resume=true does")
                except OSError:
                    pass
        os._exit(RAY_GONE_EXIT)

    threading.Thread(target=watch, name="ups-ray-gone", daemon=True).start()


@contextmanager
def kept_sigterm() -> Iterator[None]:
    """``ray.init`` replaces the driver's SIGTERM handler with its own ``sys.exit``: a stop signal while the report
    was written then ended the driver without a word.  The handler the sweep script installed (``run_script``: taken
    as Ctrl-C) is put back."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)


def _joined_gcs() -> str | None:
    """host:port of the GCS of the cluster this driver joined; None for a local instance it started (its stop is
    ``watch_local_ray``'s), a Ray Client driver (``ray://``, no GCS of its own to watch) or no Ray."""
    try:
        import ray

        node = ray._private.worker._global_node  # Ray 2.60: the node this driver started or joined
        if node is None or node.all_processes.get("gcs_server"):
            return None
        return str(node.gcs_address)
    except (ImportError, AttributeError):
        return None


def gcs_answers(address: str, timeout: float) -> bool:
    """Whether the GCS port at ``host:port`` takes a connection within ``timeout`` s."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def watch_cluster(lost_after_s: float, on_lost: Callable[[str], None] | None = None,
                  probe_s: float = PROBE_S) -> Iterator[None]:
    """While the block runs (Tune's loop), end the driver when the GCS of the cluster it joined has not taken a
    connection for ``lost_after_s`` s (the head node stopped, ``ray stop`` on it, a network cut): ``on_lost`` runs
    first with what happened (the sweep records its unfinished trials and prints its leaderboard and resume
    command), then the process exits with ``CLUSTER_LOST_EXIT``.  Without it the driver hung a minute in Ray's
    reconnect loop and Ray aborted it with a GCS error, the running trials unrecorded and no resume command.
    Nothing is watched on a local instance the driver started (``watch_local_ray`` handles its stop)."""
    address = _joined_gcs()
    if address is None or lost_after_s <= 0:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        since: float | None = None
        while not done.wait(probe_s):
            if gcs_answers(address, timeout=min(probe_s, 5.0)):
                since = None
                continue
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= lost_after_s:
                break
        else:
            return
        what = (f"the Ray cluster's GCS at {address} has not answered for {lost_after_s:g} s (its head node stopped "
                f"or cannot be reached), so the driver ends here with its unfinished trials recorded as interrupted; "
                f"its finished trials are on the leaderboard, and Tune's state and checkpoints in storage_path")
        try:
            log(what)
            if on_lost is not None:
                on_lost(what)
        except Exception as e:  # noqa: BLE001 - the exit must happen; resume=true rewrites what is missing
            try:
                log(f"could not record the unfinished trials ({type(e).__name__}: {e}); resume=true does")
            except OSError:
                pass
        os._exit(CLUSTER_LOST_EXIT)

    thread = threading.Thread(target=watch, name="ups-cluster-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
