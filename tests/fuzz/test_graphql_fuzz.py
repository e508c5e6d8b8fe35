"""Schemathesis against `/graphql` with an owner's key: every query and mutation, with
generated arguments, never a server error, a masked "Unexpected error." or a time-out."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from tests.fuzz.conftest import FUZZ_EXAMPLES, REQUEST_TIMEOUT, Served

UNEXPECTED = "Unexpected error."


def server_failure(response: schemathesis.Response) -> str | None:
    """What is wrong with an answer, from the server's side, or None."""
    if response.status_code >= 500:
        return f"status {response.status_code}: {response.text[:500]}"
    body = response.json()
    for error in body.get("errors") or ():
        if error.get("message") == UNEXPECTED:
            return f"masked server error: {error}"
    return None


def test_every_operation_answers_without_server_error_or_time_out(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.owner_key}"}
    schema = schemathesis.graphql.from_url(f"{served.url}/graphql", headers=auth)
    counts: Counter[str] = Counter()
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) > 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers(case: schemathesis.Case[Any]) -> None:
            counts["cases"] += 1
            try:
                response = case.call(session=session, headers=auth, timeout=REQUEST_TIMEOUT)
            except requests.Timeout:
                counts["time-outs"] += 1
                pytest.fail(f"time-out after {REQUEST_TIMEOUT} s: {case.body!r}")
            failure = server_failure(response)
            if failure is not None:
                counts["server errors"] += 1
            assert failure is None, f"{failure}\nquery: {case.body!r}"

        answers()
    print(f"schemathesis: {dict(counts)} over {len(operations)} operations")
    assert counts["cases"] >= len(operations)
