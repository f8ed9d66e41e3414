"""Test deployments of the Classifier: the production options, and a model that can be slowed or
wedged as a busy or hung device would be."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import ray
from ray import serve
from ray.serve import Deployment

from sentiment.apps import DEPLOYMENT_OPTIONS, Classifier
from sentiment.model import BatchReport, Prediction
from sentiment.settings import Settings


def replicas(app: str) -> list[str]:
    """Name the live replica actors of an app (Serve names them SERVE_REPLICA::app#deployment#id)."""
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#")
    )


def running_replicas(app: str) -> int:
    """Count the RUNNING replicas Serve reports for an app's one deployment."""
    (deployment,) = serve.status().applications[app].deployments.values()
    return deployment.replica_states.get("RUNNING", 0)


@contextmanager
def deployed(
    app: str, settings: Settings, cls: type = Classifier.func_or_class, **options
) -> Iterator[Deployment]:
    """Deploy `cls` with the production options (and `options`) as app `app` under /app; delete it
    afterwards, whatever happened, without waiting for its replicas to stop (Serve's client polls
    once a second until they have: seconds of every test). Yield the deployment, to redeploy it."""
    deployment = serve.deployment(cls, name=f"{app}Classifier", **{**DEPLOYMENT_OPTIONS, **options})
    serve.run(deployment.bind(settings), name=app, route_prefix=f"/{app}")
    try:
        yield deployment
    finally:
        serve.delete(app, _blocking=False)


class Faulty(Classifier.func_or_class):
    """The Classifier with ways to slow or wedge its model, as a busy or hung device would."""

    health_timeout_s = 2.0  # the production 10 s, shortened to keep the test short

    def freeze(self) -> None:
        """From now on, every model call hangs; the process stays up and its event loop free."""
        never = threading.Event()

        def stuck(*args: object) -> None:
            never.wait(300)
            raise RuntimeError("frozen by the test")

        self.model.predict_batch_report = stuck

    def slow_down(self, seconds: float) -> None:
        """From now on, every model call takes `seconds` longer."""
        run = self.model.predict_batch_report

        def slow(*args: object) -> BatchReport:
            time.sleep(seconds)
            return run(*args)

        self.model.predict_batch_report = slow

    async def score(
        self, served: object, texts: list[str], *args: object
    ) -> list[tuple[Prediction, list[float]]]:
        """Classify, counting the texts of requests that reached this replica."""
        self.received = getattr(self, "received", 0) + len(texts)
        return await super().score(served, texts, *args)

    def held(self) -> int:
        """Count the requests' texts this replica has received."""
        return getattr(self, "received", 0)


def replica_process(app: str) -> psutil.Process:
    """Find an app's one replica process (Ray titles it ray::ServeReplica:<app>:<deployment>)."""
    (process,) = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(f"ServeReplica:{app}:" in part for part in p.info["cmdline"] or [])
    ]
    return process
