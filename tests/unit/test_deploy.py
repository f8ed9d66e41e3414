"""The deploy module's pure parts: the drain's config sent to Serve's REST API, and the status line."""

from sentiment.deploy import MODEL_LOAD_ERROR, drained, draining_config, reason
from sentiment.model import ModelLoadError


def details(user_config: dict | None, status: str = "RUNNING") -> dict:
    """Serve's GET /api/serve/applications/ answer for one app deployed from a config file."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 30},
        "grpc_options": {"port": 9000, "grpc_servicer_functions": []},
        "target_capacity": None,
        "applications": {
            "classifier": {
                "status": status,
                "deployed_app_config": {
                    "name": "classifier",
                    "route_prefix": "/",
                    "import_path": "sentiment.apps:build_classifier",
                    "args": {"model": "/models/x"},
                    "deployments": [{"name": "Classifier", "num_replicas": 2}],
                },
                "deployments": {
                    "Classifier": {
                        "status": "HEALTHY",
                        "deployment_config": {"user_config": user_config},
                    }
                },
            }
        },
    }


def test_the_drain_adds_draining_to_the_running_user_config_and_keeps_the_rest() -> None:
    config = draining_config(details({"max_batch_size": 8}))
    (app,) = config["applications"]
    assert app["args"] == {"model": "/models/x"}
    assert app["deployments"] == [
        {
            "name": "Classifier",
            "num_replicas": 2,
            "user_config": {"max_batch_size": 8, "draining": True},
        }
    ]
    assert config["http_options"]["port"] == 8000 and "target_capacity" not in config


def test_drained_waits_for_the_new_user_config_and_the_end_of_the_update() -> None:
    before = details({"max_batch_size": 8})["applications"]["classifier"]
    assert not drained(before)  # the running config, before Serve took the drain
    after = details({"max_batch_size": 8, "draining": True}, status="DEPLOYING")
    assert not drained(after["applications"]["classifier"])  # replicas still answering
    done = details({"max_batch_size": 8, "draining": True})
    assert drained(done["applications"]["classifier"])


def test_the_status_line_strips_our_model_errors_class_name() -> None:
    # deploy.py names the class as text so that it need not import torch; this keeps them equal.
    assert f"{ModelLoadError.__module__}.{ModelLoadError.__name__}: " == MODEL_LOAD_ERROR
    serve_message = (
        f"Traceback ...\n  raise ...\n{MODEL_LOAD_ERROR}cannot load model 'x': no folder\n"
    )
    assert reason(serve_message) == "cannot load model 'x': no folder"
