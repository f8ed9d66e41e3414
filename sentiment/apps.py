"""The two Ray Serve apps: their deployment options, the Router and Classifier deployments, and the
builders `serve run`, serve_config.yaml and the scripts use. Importing this module starts nothing.

    Router      GET /router?txt=...    a plain Serve deployment (the tutorial's first app)
    Classifier  the FastAPI app of sentiment.http, built per replica

Both are a sentiment.replica.Replica: the models, their batchers, admission, drain and health.
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from ray.serve.schema import LoggingConfig

from sentiment.errors import MethodNotAllowed
from sentiment.http import (
    RequestLine,
    build_api,
    check_api_key,
    check_query_encoding,
    error_response,
)
from sentiment.inputs import check_text
from sentiment.replica import Replica
from sentiment.settings import TUNABLES, Settings
from sentiment.source import check_available

ROUTER_APP = "router"
CLASSIFIER_APP = "classifier"
ROUTE_PREFIXES = {ROUTER_APP: "/router", CLASSIFIER_APP: "/"}

# The one place these options are set: the config files do not repeat them (a unit test checks).
DEPLOYMENT_OPTIONS = {
    # Batches can only hold the texts of the requests a replica holds at once (Serve's default is
    # 5 requests): 128 single texts, or far more texts from batch requests.
    "max_ongoing_requests": 128,
    # Past this many waiting requests, answer at once with 503 and Retry-After instead of queueing
    # without bound (a few seconds of work at the full model's rate on 2 cores).
    "max_queued_requests": 256,
    "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=1),
    # The apps write one line per request themselves (sentiment.http.RequestLine).
    "logging_config": LoggingConfig(enable_access_log=False),
}


@serve.deployment(**DEPLOYMENT_OPTIONS)
class Router(Replica):
    """GET /router?txt=...: the tutorial's plain deployment, with the model built once."""

    async def __call__(self, request: Request) -> Response:
        """Classify the `txt` query parameter, and log the request's line."""
        line = RequestLine(request.method, request.url.path, request.headers)
        try:
            response = await self._answer(request)
        except Exception as error:
            response = error_response(error)
        line.write(response.status_code)
        return response

    async def _answer(self, request: Request) -> Response:
        """Check the request and classify its text."""
        if request.method != "GET":
            raise MethodNotAllowed("use GET /router?txt=...", headers={"Allow": "GET"})
        check_api_key(request.headers.get("authorization"), self.keys)
        await check_query_encoding(request)
        text = check_text(request.query_params.get("txt"), "txt", self.settings)
        return JSONResponse(await self.classify(text))


@serve.deployment(**DEPLOYMENT_OPTIONS)
@serve.ingress()
class Classifier(Replica):
    """The FastAPI app: the tutorial's routes, a JSON body form, a batch endpoint, Hugging Face's
    text-classification shape, and the models a request may name (sentiment.http)."""

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this once the replica is built: the app serves this replica."""
        return build_api(self)


def _options(settings: Settings) -> dict:
    """Deployment options that follow the settings: the log encoding, and the tunables as
    user_config (so a config file's `user_config:` can change them without a restart)."""
    return {
        "logging_config": LoggingConfig(
            encoding=settings.log_format.upper(), enable_access_log=False
        ),
        "user_config": {name: getattr(settings, name) for name in TUNABLES},
    }


def _prepare(settings: Settings) -> Settings:
    """Fail the build when a model (the default, or any of SENTIMENT_MODELS) cannot be had or the
    key file cannot be read: before Serve replaces any running replica, so a bad `serve deploy`
    leaves the running version answering, and in seconds, with one line. Return the settings with
    the key file's keys read in, so replicas on other machines need no copy of it."""
    check_available(settings.model, settings.model_revision)
    for source in settings.models.values():
        check_available(source)
    if settings.api_keys_file is None:
        return settings
    return settings.model_copy(update={"api_keys": settings.keys(), "api_keys_file": None})


def build_router(args: Settings) -> Application:
    """Build the Router app (`serve run sentiment.apps:build_router`)."""
    settings = _prepare(args)
    return Router.options(**_options(settings)).bind(settings)


def build_classifier(args: Settings) -> Application:
    """Build the Classifier app (`serve run sentiment.apps:build_classifier`)."""
    settings = _prepare(args)
    return Classifier.options(**_options(settings)).bind(settings)


BUILDERS = {ROUTER_APP: build_router, CLASSIFIER_APP: build_classifier}
