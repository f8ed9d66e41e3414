"""Schemathesis against the Classifier app's own OpenAPI document (tests/integration/fuzz.py)."""

from sentiment.apps import CLASSIFIER_APP
from tests.integration.fuzz import holds_to_its_openapi_document


def test_every_operation_holds_to_its_openapi_document(base_url: str) -> None:
    holds_to_its_openapi_document(base_url, CLASSIFIER_APP)
