"""Hypothesis against the `/v1` JSON bodies: whatever the body, the answer is never a server
error nor a time-out, and every refusal is the JSON error of every route."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ_EXAMPLES, REQUEST_TIMEOUT, Served

FIELDS = [
    "resource", "amount", "idempotency_key", "occurred_at", "model", "action", "agent_id",
    "input_tokens", "output_tokens", "kind", "ttl_seconds", "amout",
]  # fmt: skip
RESOURCES = ["tokens", "documents", "agents", "seats", "voice_minutes"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=5_000),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(RESOURCES),
    st.sampled_from(["2026-03-15T12:00:00Z", "2026-03-15", "9999-12-31T23:59:59+14:00", "x"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
events = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"events": st.lists(events, max_size=5)}),
    st.fixed_dictionaries({"events": json_values}),
    events,
)
paths = st.sampled_from(
    [
        "/v1/usage",
        "/v1/usage/check",
        "/v1/reservations",
        "/v1/reservations/0123456789abcdef0123456789abcdef/commit",
        "/v1/reservations/nothing/release",
    ]
)


def test_v1_bodies_never_make_a_server_error(served: Served) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {served.service_key}"
    counts: Counter[str] = Counter()

    @given(path=paths, body=bodies, raw=st.booleans())
    @settings(
        max_examples=FUZZ_EXAMPLES * 25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def answers(path: str, body: Any, raw: bool) -> None:
        counts["cases"] += 1
        content = json.dumps(body, ensure_ascii=raw).encode("utf-8", "surrogatepass")
        try:
            response = session.post(
                served.url + path,
                data=content,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.Timeout:
            pytest.fail(f"time-out after {REQUEST_TIMEOUT} s: {path} {content[:300]!r}")
        counts[str(response.status_code)] += 1
        assert response.status_code < 500, f"{path} {content[:300]!r}: {response.text[:500]}"
        answer = response.json()
        if response.status_code >= 400:
            assert set(answer) == {"error"}
            assert set(answer["error"]) == {"code", "message"}

    answers()
    print(f"hypothesis /v1: {dict(counts)}")
    assert counts["cases"] >= FUZZ_EXAMPLES
