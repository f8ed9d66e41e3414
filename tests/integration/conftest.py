"""A real Ray and Serve for this tier, owned by fixtures and shut down even when a test fails."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray import serve
from ray.serve import RunTarget

from bench.harness import free_port
from sentiment.apps import BUILDERS, ROUTE_PREFIXES
from sentiment.settings import Settings
from sentiment_ops.deploy import http_options
from sentiment_ops.head import stop_haproxy
from tests.integration.deployments import replicas

# Small caps, so the over-cap cases stay cheap to send.
MAX_TEXT_CHARS = 5_000
MAX_BATCH_TEXTS = 64
# Short, so a request to a stuck model fails within a test; far past any answer here.
REQUEST_TIMEOUT_S = 8.0


@pytest.fixture(scope="package")
def settings(tiny_model_dir: Path) -> Settings:
    """Settings both apps are deployed with."""
    return Settings(
        model=str(tiny_model_dir),
        num_threads=1,
        max_batch_size=16,
        batch_wait_timeout_s=0.01,
        max_text_chars=MAX_TEXT_CHARS,
        max_batch_texts=MAX_BATCH_TEXTS,
        request_timeout_s=REQUEST_TIMEOUT_S,
        http_port=free_port(),
    )


@pytest.fixture(scope="package")
def ray_session() -> Iterator[None]:
    """Start a private Ray for this tier; stop it afterwards, whatever happened."""
    # Loopback only: left alone, Ray binds to the machine's network address.
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    nodes = [node["NodeID"] for node in ray.nodes()]
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
        stop_haproxy(nodes)


@pytest.fixture(scope="package")
def base_url(ray_session: None, settings: Settings) -> str:
    """Deploy both apps, as the entry scripts do, on a free loopback port; return the URL."""
    serve.start(http_options=http_options(settings))
    # Both at once: their replicas start and load their models side by side.
    serve.run_many(
        [
            RunTarget(build(settings), name=name, route_prefix=ROUTE_PREFIXES[name])
            for name, build in BUILDERS.items()
        ]
    )
    return f"http://127.0.0.1:{settings.http_port}"


@pytest.fixture(scope="package", autouse=True)
def first_replicas(base_url: str) -> dict[str, list[str]]:
    """The replicas of both apps as first deployed (before any test runs), to tell later whether
    any was replaced."""
    return {app: replicas(app) for app in BUILDERS}
