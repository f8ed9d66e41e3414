"""Shared fixtures; every test is marked with its tier, the folder it lives in."""

import os
from pathlib import Path

import pytest

# Before anything imports Ray: left unset, a local Ray may turn token auth on and lock out the CLI.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Keep every Ray of the tests on loopback: otherwise a driver swaps 127.0.0.1 for the machine's
# network address. This flag also refuses `ray start --address`: the one test that starts a
# worker that way (tests/multinode/test_kuberay_path.py) unsets it for that worker.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Tests never reach for the model hub; they build their own models.
os.environ["HF_HUB_OFFLINE"] = "1"
# Only now: importing sentiment imports transformers, whose hub client reads HF_HUB_OFFLINE once.
from bench.harness import quiet_port
from sentiment.settings import ray_env

# Every Ray the tests start runs in the default mode, Serve's fast path (unless the caller says
# otherwise, e.g. RAY_SERVE_ENABLE_HA_PROXY=0 to test the Python proxy).
for _name, _value in ray_env().items():
    os.environ.setdefault(_name, _value)
# Ray's HAProxy binds fixed stats and metrics ports (8404, 9101) on every interface: any other
# HAProxy on this machine (another head, another run) would make ours fail to start, and Serve
# would wait 60 s for its proxy. Every Ray the tests start gets ports nobody holds, and none that
# a process binding port 0 could take before the last test's HAProxy binds them (CI saw that).
for _name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
    os.environ.setdefault(_name, str(quiet_port()))

TESTS = Path(__file__).parent
TIERS = ("unit", "cli", "integration", "multinode", "e2e", "container")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from its folder."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save an untrained tiny DistilBERT once per session, loaded like the real one."""
    from sentiment.testing import build_model

    return build_model(tmp_path_factory.mktemp("models") / "tiny", "tiny")
