"""deploy/kubernetes/rayservice.yaml, checked as a Kubernetes API server and the KubeRay operator would.

No cluster runs here. KubeRay's own RayService CRD (vendored in deploy/kubernetes/kuberay/, with its
license and source) gives the schema an API server applies: unknown fields refused except where the
schema preserves them, and int-or-string fields taking either. The operator then applies its own rules (ray-project/kuberay,
ray-operator/controllers/ray/utils/validation.go and the RayCluster webhook); operator_errors()
restates the ones a RayService like ours can break.
"""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.helpers import rayservice

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "kubernetes" / "kuberay" / "ray.io_rayservices.yaml"
# validation.go: MaxRayClusterNameLength (53) minus the 6 characters KubeRay appends for the cluster.
MAX_RAYSERVICE_NAME = 47
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
UPGRADE_TYPES = {"NewClusterWithIncrementalUpgrade", "NewCluster", "None"}


def strict(node: Any) -> Any:
    """Turn a CRD's structural schema into JSON Schema that refuses unknown fields, as the API
    server does (strict field validation), except under x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: strict(value) for key, value in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    """A validator for KubeRay's ray.io/v1 RayService schema."""
    crd = yaml.safe_load(CRD.read_text())
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return Draft7Validator(strict(v1["schema"]["openAPIV3Schema"]))


def schema_errors(validator: Draft7Validator, resource: dict) -> list[str]:
    """What the API server would refuse, one line per field."""
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(resource)
    ]


def operator_errors(resource: dict) -> list[str]:
    """The operator's own rules (validation.go, the RayCluster webhook) that a RayService can break."""
    errors = []
    name = resource["metadata"]["name"]
    if len(name) > MAX_RAYSERVICE_NAME:
        errors.append(f"RayService name should be no more than {MAX_RAYSERVICE_NAME} characters")
    if not DNS_1035_LABEL.fullmatch(name):
        errors.append("RayService name should be a valid DNS1035 label")
    spec = resource["spec"]
    cluster = spec["rayClusterConfig"]
    groups = {"Head": cluster["headGroupSpec"]}
    groups |= {group["groupName"]: group for group in cluster.get("workerGroupSpecs", [])}
    if len(groups) != 1 + len(cluster.get("workerGroupSpecs", [])):
        errors.append("worker group names must be unique")
    resource_params = {"num-cpus", "num-gpus", "memory", "resources"}
    for group_name, group in groups.items():
        if not group["template"]["spec"].get("containers"):
            errors.append(f"{group_name} group should have at least one container")
        params = group.get("rayStartParams", {})
        if resource_params & set(params) and group.get("resources"):
            errors.append(f"resources set in both rayStartParams and resources for {group_name}")
        if "labels" in params:
            errors.append(f"rayStartParams['labels'] is not supported for {group_name} group")
    autoscaling = cluster.get("enableInTreeAutoscaling", False)
    for group in cluster.get("workerGroupSpecs", []):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if low > high:
            errors.append(f"worker group {group['groupName']}: minReplicas > maxReplicas")
        elif not low <= group.get("replicas", low) <= high:
            errors.append(f"worker group {group['groupName']}: replicas outside min..max")
        if autoscaling and group.get("suspend"):
            errors.append(f"worker group {group['groupName']} cannot be suspended with Autoscaler")
    head_env = {
        e["name"]: e.get("value")
        for e in groups["Head"]["template"]["spec"]["containers"][0].get("env", [])
    }
    if not autoscaling and head_env.get("RAY_enable_autoscaler_v2") in ("1", "true"):
        errors.append("RAY_enable_autoscaler_v2 needs enableInTreeAutoscaling: true")
    if cluster["headGroupSpec"].get("headService", {}).get("metadata", {}).get("name"):
        errors.append(
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set"
        )
    upgrade = (spec.get("upgradeStrategy") or {}).get("type")
    if upgrade is not None and upgrade not in UPGRADE_TYPES:
        errors.append(f"Spec.UpgradeStrategy.Type value {upgrade} is invalid")
    if spec.get("rayClusterDeletionDelaySeconds", 0) < 0:
        errors.append("Spec.RayClusterDeletionDelaySeconds should be a non-negative integer")
    try:
        yaml.safe_load(spec["serveConfigV2"])  # the operator parses it before sending it to Serve
    except yaml.YAMLError as error:
        errors.append(f"serveConfigV2 is not YAML: {error}")
    return errors


def test_the_rayservice_passes_kuberays_crd_schema(validator: Draft7Validator) -> None:
    assert schema_errors(validator, rayservice()) == []


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (["spec", "rayClusterConfig", "enableInTreeAutoscalling"], True, "not allowed"),
        (
            ["spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", "num-cpus"],
            0,
            "not of type",
        ),
        (["spec", "rayClusterConfig", "workerGroupSpecs", 0, "maxReplicas"], "4", "not of type"),
        (
            [
                "spec",
                "rayClusterConfig",
                "workerGroupSpecs",
                0,
                "template",
                "spec",
                "containers",
                0,
                "imagePullPolicyy",
            ],
            "Always",
            "not allowed",
        ),
    ],
)
def test_the_schema_check_refuses_what_an_api_server_would(
    validator: Draft7Validator, path: list, value: Any, words: str
) -> None:
    broken = copy.deepcopy(rayservice())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = schema_errors(validator, broken)
    assert len(errors) == 1 and words in errors[0], errors


def test_the_rayservice_passes_the_operators_rules() -> None:
    assert operator_errors(rayservice()) == []


def test_the_operator_rules_refuse_what_kuberay_would() -> None:
    cases = {
        "no more than 47": lambda m: m["metadata"].update(name="s" * 48),
        "DNS1035": lambda m: m["metadata"].update(name="Sentiment_Serve"),
        "minReplicas > maxReplicas": lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(minReplicas=99),
        "unique": lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"].append(copy.deepcopy(m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0])),
        "both rayStartParams and resources": lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"].update(resources={"CPU": "1"}),
        "UpgradeStrategy": lambda m: m["spec"].update(upgradeStrategy={"type": "BlueGreen"}),
    }  # fmt: skip
    for words, breaks in cases.items():
        broken = copy.deepcopy(rayservice())
        breaks(broken)
        errors = operator_errors(broken)
        assert any(words in error for error in errors), (words, errors)
