"""Deploy one app onto the running Ray head: the body of serve_with_rayserve.py and serve_with_fastapi.py."""

import os
import socket
import sys

import ray
from ray import serve

from sentiment.apps import BUILDERS, CLASSIFIER_APP, ROUTE_PREFIXES, ROUTER_APP
from sentiment.model import ModelLoadError, SentimentBertModel
from sentiment.settings import Settings

EXAMPLES = {
    ROUTER_APP: ["GET  {url}/router?txt=i+like+you"],
    CLASSIFIER_APP: [
        "GET  {url}/test",
        "GET  {url}/healthcheck",
        "POST {url}/classify?input_text=i+like+you",
        'POST {url}/classify/batch   {{"texts": ["i like you", "i do not"]}}',
        "docs {url}/docs",
    ],
}


NO_HEAD = (
    "error: no Ray head is running here: start one with `ray start --head`"
    " (or set RAY_ADDRESS to a head), then run this again"
)


def head_answers(address: str | None) -> bool:
    """Say whether RAY_ADDRESS (host:port) answers; ray.init would wait minutes to say no."""
    if not address or address == "auto" or "://" in address:
        return True  # "auto" fails fast by itself; ray:// and http:// are checked by Ray.
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError):
        return False
    return True


def http_options(settings: Settings) -> dict:
    """Serve's proxy options from the settings (what serve_config.yaml's http_options says)."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "request_timeout_s": settings.request_timeout_s,
    }


def deploy(app_name: str) -> int:
    """Deploy (or update in place) one app on the running head, print where it answers, return."""
    settings = Settings()
    try:
        # Cheap (config only), and a clear line here beats a replica failing on the cluster.
        SentimentBertModel.check_available(settings.model, settings.model_revision)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    address = os.environ.get("RAY_ADDRESS")
    if not head_answers(address):
        print(f"{NO_HEAD}; nothing answers at RAY_ADDRESS={address}", file=sys.stderr)
        return 1
    try:
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print(NO_HEAD, file=sys.stderr)
        return 1
    # Only takes effect when Serve is not yet running on the cluster.
    serve.start(http_options=http_options(settings))
    serve.run(BUILDERS[app_name](settings), name=app_name, route_prefix=ROUTE_PREFIXES[app_name])
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    url = f"http://{host}:{settings.http_port}"
    print(f"{app_name} app is up, model {settings.model}:")
    for line in EXAMPLES[app_name]:
        print("  " + line.format(url=url))
    return 0
