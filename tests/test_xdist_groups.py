"""The suite's xdist groups are in force (``tests/conftest.py``): under ``test.sh`` (``-n 2 --dist loadgroup``) every
test on the session's Ray cluster runs on one worker, so the run starts one ``ray.init``; the others run a module
at a time beside them.  xdist marks a grouped test by adding ``@<group>`` to its node id; until 2026-12-07 no test
had it (the conftest hook ran after xdist's, and pytest 9.2 no longer reads the node id xdist 3.8 rewrites), so
the Ray tests were spread over both workers, each with its own Ray instance and its own copies of the session's
sweeps.  Outside ``--dist loadgroup`` (one process, ``pytest -p no:xdist``) there are no groups to check."""
from __future__ import annotations

import pytest

from tests.conftest import RAY_GROUP


def _grouped(request: pytest.FixtureRequest) -> bool:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run under --dist loadgroup (test.sh runs it so)")
    return True


def test_a_test_without_the_session_cluster_runs_in_its_modules_group(request) -> None:
    _grouped(request)
    assert request.node.nodeid.endswith(f"@{request.node.nodeid.split('::', 1)[0]}"), request.node.nodeid


def test_a_test_on_the_session_cluster_runs_in_the_one_ray_group(ray_session, request) -> None:
    _grouped(request)
    assert request.node.nodeid.endswith(f"@{RAY_GROUP}"), request.node.nodeid
