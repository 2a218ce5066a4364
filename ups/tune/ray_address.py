"""Is there a Ray cluster at RAY_ADDRESS?  Answered in seconds, before data, baselines or ``ray.init``.

A TCP connect alone is not enough: a port can be open and still not be a Ray head's GCS (Redis on 6379,
the dashboard's 8265 given instead of 6379, a proxy).  There ``ray.init`` retries for 40-80 s and ends
in a traceback, so the GCS itself is asked for its cluster ID, in a daemon thread with a deadline.
"""
from __future__ import annotations

import threading
from typing import Any


def gcs_problem(address: str, timeout: float) -> str | None:
    """None when a Ray GCS at ``host:port`` answers within ``timeout`` s, else what went wrong.

    Uses Ray's own GCS client (``ray._raylet.GcsClient``, what ``ray.init`` itself connects with); if
    that internal API is missing or changed, the probe is skipped (None) and ``ray.init`` decides.
    """
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return None
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["cluster_id"] = GcsClient(address=address).cluster_id
        except TypeError:  # the internal constructor changed: no probe
            answer["skip"] = True
        except Exception as e:  # noqa: BLE001 - any failure of the handshake is the answer
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            answer["error"] = f"{type(e).__name__}: {first[:200]}"

    probe = threading.Thread(target=ask, name="ray-gcs-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        return f"the port accepts connections but no Ray GCS answered within {timeout:g}s"
    if "error" in answer:
        return f"the port accepts connections but it is not a Ray GCS ({answer['error']})"
    return None
