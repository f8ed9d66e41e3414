"""The operations modules' pure parts: the drain's config sent to Serve's REST API, the status line, and
the command and environment a head starts with."""

from sentiment.settings import ray_env
from sentiment.source import ModelLoadError
from sentiment_ops.deploy import MODEL_LOAD_ERROR, drained, draining_config, pinned_size, reason
from sentiment_ops.head import HEAD_DEFAULTS, RAY, head_command, head_env


def details(
    user_config: dict | None,
    status: str = "RUNNING",
    replicas: tuple[str, ...] = ("RUNNING",) * 2,
    deployment_status: str = "HEALTHY",
) -> dict:
    """Serve's GET /api/serve/applications/ answer for one app deployed from a config file, its
    deployment's replicas in these states."""
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
                        "status": deployment_status,
                        "deployment_config": {"num_replicas": 2, "user_config": user_config},
                        "replicas": [{"state": state} for state in replicas],
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
            "rolling_update_percentage": 1.0,  # every replica at once, not a fifth at a time
        }
    ]
    assert config["http_options"]["port"] == 8000 and "target_capacity" not in config


def test_a_deployment_waiting_on_replicas_the_cluster_cannot_place_is_pinned_at_those_running() -> (
    None
):
    # Serve's update waits for every replica, so an upscale that cannot be placed (STARTING for
    # ever) would hold the drain open: the second look pins the size, which stops those.
    waiting = details({"draining": True}, "DEPLOYING", ("RUNNING", "STARTING"), "UPDATING")
    (app,) = draining_config(waiting)["applications"]
    assert app["deployments"][0]["num_replicas"] == 2  # not pinned on the first PUT
    (app,) = draining_config(waiting, pin=True)["applications"]
    assert app["deployments"][0] == {
        "name": "Classifier",
        "num_replicas": 1,
        "user_config": {"draining": True},
        "rolling_update_percentage": 1.0,
    }
    # Not before Serve has taken the drain: what it waits on then is the update before it (a look
    # just after the PUT), whose replicas are not the ones the drain will keep.
    before = details({}, "DEPLOYING", ("RUNNING", "STARTING"), "UPDATING")
    (app,) = draining_config(before, pin=True)["applications"]
    assert app["deployments"][0]["num_replicas"] == 2
    # Not while a replica is still taking the config (it may be the rollout's first step).
    taking = details({"draining": True}, "DEPLOYING", ("UPDATING", "STARTING"), "UPDATING")
    (app,) = draining_config(taking, pin=True)["applications"]
    assert app["deployments"][0]["num_replicas"] == 2


def test_a_pinned_autoscaling_size_keeps_the_configs_own_options() -> None:
    autoscaled = {
        "deployment_config": {
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 8, "policy": {"x": 1}}
        },
        "replicas": [{"state": "RUNNING"}, {"state": "UPDATING"}, {"state": "STARTING"}],
    }
    written = {"name": "C", "autoscaling_config": {"max_replicas": 8, "upscale_delay_s": 10}}
    # Over what the config says: Serve's filled-in policy would count as new code (a restart).
    assert pinned_size(autoscaled, written) == {
        "autoscaling_config": {
            "min_replicas": 2,
            "initial_replicas": 2,
            "max_replicas": 2,
            "upscale_delay_s": 10,
        }
    }
    # With none running there is nothing to hold (and Serve needs one replica at least).
    assert pinned_size({**autoscaled, "replicas": [{"state": "STARTING"}]}, written) == {}


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


def test_a_head_starts_with_the_projects_defaults_unless_told_otherwise() -> None:
    command = head_command("--num-cpus=3", "--port=7000")
    assert command[:3] == [RAY, "start", "--head"]
    assert [part for part in command if part.startswith("--num-cpus")] == ["--num-cpus=3"]
    assert f"--metrics-export-port={HEAD_DEFAULTS['--metrics-export-port']}" in command
    assert "--dashboard-host=127.0.0.1" in command and "--port=7000" in command


def test_a_head_gets_the_flags_of_ray_env_and_a_flag_set_by_hand_wins() -> None:
    flags = ray_env()
    env = head_env({"RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0" and env["PATH"] == "/bin"
    assert {
        name: value for name, value in env.items() if name != "RAY_SERVE_ENABLE_HA_PROXY"
    }.items() >= {
        name: value for name, value in flags.items() if name != "RAY_SERVE_ENABLE_HA_PROXY"
    }.items()
