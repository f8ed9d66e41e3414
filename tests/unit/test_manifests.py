"""serve_config.yaml and the KubeRay RayService hold the same apps, and both pass Serve's own schema."""

import os
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from sentiment.apps import BUILDERS, DEPLOYMENT_OPTIONS, ROUTE_PREFIXES
from sentiment.settings import Settings, ray_env
from sentiment_ops.deploy import http_options
from tests.helpers import rayservice

ROOT = Path(__file__).resolve().parents[2]


def serve_config() -> dict:
    """Load serve_config.yaml."""
    return yaml.safe_load((ROOT / "serve_config.yaml").read_text())


def test_both_configs_pass_serves_schema() -> None:
    ServeDeploySchema.model_validate(serve_config())
    ServeDeploySchema.model_validate(yaml.safe_load(rayservice()["spec"]["serveConfigV2"]))


def test_kubernetes_serves_the_same_applications() -> None:
    kube = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    local = serve_config()
    assert kube["applications"] == local["applications"]
    assert kube["proxy_location"] == local["proxy_location"]
    # In a pod, the proxy must answer on the pod's address, not only its loopback.
    assert kube["http_options"] == {**local["http_options"], "host": "0.0.0.0"}


def test_config_names_the_apps_the_code_builds() -> None:
    apps = {app["name"]: app for app in serve_config()["applications"]}
    assert set(apps) == set(BUILDERS)
    for name, app in apps.items():
        assert app["route_prefix"] == ROUTE_PREFIXES[name]
        module, _, builder = app["import_path"].partition(":")
        assert (
            module == "sentiment.apps"
            and getattr(__import__(module, fromlist=[builder]), builder) is BUILDERS[name]
        )


def test_rayservice_pods_are_sized_probed_and_run_the_image() -> None:
    spec = rayservice()["spec"]["rayClusterConfig"]
    assert spec["rayVersion"] == "2.60.0"
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["image"].startswith("sentiment-serve:")
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"/dev/shm"} <= {mount["mountPath"] for mount in container["volumeMounts"]}
    for worker in spec["workerGroupSpecs"]:
        probe = worker["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"] == {"path": "/-/healthz", "port": 8000}
        assert worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]


def test_every_pod_starts_ray_with_the_flags_of_ray_env() -> None:
    spec = rayservice()["spec"]["rayClusterConfig"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
        assert ray_env().items() <= env.items(), container["name"]


def test_the_image_environment_carries_the_flags_of_ray_env() -> None:
    # Not only the entrypoint's: `ray start --head` typed in the container gets them too.
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line.split()[1:])
    assert ray_env().items() <= env.items()


def test_the_scripts_start_serve_as_the_config_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SENTIMENT_")]:
        monkeypatch.delenv(name)
    assert http_options(Settings()) == serve_config()["http_options"]


def test_the_configs_repeat_none_of_the_deployment_options_set_in_code() -> None:
    # A config file overrides the code: a copy there would silently win after the code changed.
    kube = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    for config in (serve_config(), kube):
        for app in config["applications"]:
            for deployment in app.get("deployments", []):
                assert not set(deployment) & set(DEPLOYMENT_OPTIONS), (app["name"], deployment)


def test_the_docker_build_context_holds_every_file_the_dockerfile_copies() -> None:
    # .dockerignore lets through only what it names: a file copied but not named fails the build.
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for line in " ".join((ROOT / "Dockerfile").read_text().split("\\\n")).splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                top = source.rstrip("/").split("/")[0]
                assert any(fnmatch(top, pattern) for pattern in allowed), source
