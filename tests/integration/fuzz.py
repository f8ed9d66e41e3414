"""Schemathesis against an app's own OpenAPI document, over real HTTP: the check the fuzz tests run,
with or without API keys.

Every operation gets cases that fit the document (positive) and cases that break it (negative);
every answer must be no 5xx, a status the document lists, with the body it describes, and a
negative case must be refused.
"""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.deployments import replicas

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
PROFILE = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def holds_to_its_openapi_document(
    base_url: str, app: str, headers: dict[str, str] | None = None
) -> None:
    """Run every operation's cases against app `app` at `base_url`, sending `headers` with each;
    none of its replicas may restart."""
    before = set(replicas(app))
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /classify", "POST /classify/batch"}
    statuses: Counter[int] = Counter()
    for operation in operations:
        # An operation with no input (GET /test) has no way to break its document.
        takes_input = bool(list(operation.query) or list(operation.body))
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * takes_input
        for mode in modes:

            @PROFILE
            @given(case=operation.as_strategy(generation_mode=mode))
            def holds(case: schemathesis.Case) -> None:
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                holds()
            except Exception as error:
                pytest.fail(f"{operation.label} ({mode.value} cases): {error}")
    restarted = len(before - set(replicas(app)))
    print(
        f"\nschemathesis: {len(operations)} operations, {statuses.total()} cases,"
        f" statuses {dict(sorted(statuses.items()))}, replicas restarted: {restarted}"
    )
    assert not [code for code in statuses if code >= 500]
    assert restarted == 0
