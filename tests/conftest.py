"""Shared fixtures: each fixture module is owned by the part of the project it serves.

``test.sh`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup``). Every test on the session's
Ray cluster (the ``ray_session`` fixture, directly or through another fixture) is put in one xdist group, so one
worker runs them all, one after another, on the one ``ray.init(num_cpus=2)`` of the run; the other worker runs the
tests that need no Ray cluster of the session's (model, data, metrics, reports from files, and the tests whose
drivers start a Ray instance of their own), a module at a time, beside it.  ``pytest`` without ``-n`` runs
everything in one process, as before.
"""
import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # two workers on a 2-core machine: torch's default of a thread per core in each would put 4 busy threads on
    # 2 cores (OpenMP threads spin while they wait: several times slower). Read when torch is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = [
    "tests.fixtures.ray_cluster",
    "tests.fixtures.data",
    "tests.fixtures.s3",
    "tests.fixtures.reports",
]

RAY_GROUP = "session-ray"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups: after it they were ignored
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on the session's Ray cluster share one xdist group (one worker, one cluster); see the module doc.
    The others are grouped by module, so a module-scoped fixture (a trained model to export, the calibration
    data) is built once, not once per worker.  xdist turns the groups into ``@<group>`` suffixes of the node ids
    in its own ``pytest_collection_modifyitems`` (xdist 3.8 ``remote.py``, by setting ``item._nodeid``, which pytest
    9.2 no longer reads: pyproject pins ``pytest<9.2``).  Until 2026-12-07 this hook ran after xdist's and pytest
    was 9.2, so the groups were never in force: the Ray tests ran on both workers, each with its own ``ray.init``
    and its own copies of the session's sweeps (``tests/test_xdist_groups.py`` checks the suffixes)."""
    for item in items:
        on_ray = "ray_session" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group(RAY_GROUP if on_ray else item.nodeid.split("::", 1)[0]))
