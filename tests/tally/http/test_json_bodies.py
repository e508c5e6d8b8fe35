"""`/v1` bodies decoded by orjson and answers encoded by it, with the standard library's
answers: every refusal (NaN, integers past 64 bits, lone surrogates, NULs, malformed JSON)
names the same field with the same words, and what it accepted (duplicate keys, a BOM,
UTF-16) is still accepted."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.accounts import OpenedAccount
from graph.scalars import bad_text_in
from tally.http.errors import HttpError
from tally.http.usage import decode_json_body
from tests.conftest import OpenOrg

pytestmark = pytest.mark.anyio


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org()


async def post(client: httpx.AsyncClient, account: OpenedAccount, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {account.service_api_key}"}
    return await client.post("/v1/usage", content=body, headers=headers)


def one_event(fields: str) -> bytes:
    return b'{"events": [{"resource": "tokens", ' + fields.encode() + b"}]}"


REFUSALS = [
    (
        one_event('"amount": NaN, "idempotency_key": "n"'),
        "INVALID_AMOUNT",
        "events[0].amount needs an integer written as a number (e.g. 1200), not NaN",
    ),
    (
        one_event('"amount": 1e400, "idempotency_key": "i"'),
        "INVALID_AMOUNT",
        "events[0].amount needs an integer written as a number (e.g. 1200), not Infinity",
    ),
    (
        one_event(f'"amount": {2**64}, "idempotency_key": "w"'),
        "INVALID_AMOUNT",
        f"events[0].amount must be between -{2**63 - 1} and {2**63 - 1}",
    ),
    (
        one_event(f'"amount": {-(2**63) - 1}, "idempotency_key": "w"'),
        "INVALID_AMOUNT",
        f"events[0].amount must be between -{2**63 - 1} and {2**63 - 1}",
    ),
    (
        one_event(
            f'"amount": 1, "idempotency_key": "s", "input_tokens": {2**64}, "output_tokens": 0'
        ),
        "INVALID_ATTRIBUTE",
        f"input_tokens + output_tokens ({2**64} + 0) must equal amount (1)",
    ),
    (
        one_event('"amount": 1, "idempotency_key": "a\\u0000b"'),
        "INVALID_TEXT",
        "events[0].idempotency_key contains a NUL character (\\u0000)",
    ),
    (
        one_event('"amount": 1, "idempotency_key": "k", "mo\\u0000del": "x"'),
        "INVALID_TEXT",
        "events[0].mo\x00del contains a NUL character (\\u0000)",
    ),
    (
        one_event('"amount": 1, "idempotency_key": "\\udc00"'),
        "INVALID_TEXT",
        "events[0].idempotency_key contains a character that is not valid Unicode (a lone "
        "surrogate)",
    ),
    (
        b'{"events": [{"resource": "tokens", "amount": 1, "idempotency_key": "\xed\xa0\x80"}]}',
        "INVALID_TEXT",
        "events[0].idempotency_key contains a character that is not valid Unicode (a lone "
        "surrogate)",
    ),
    (
        b'{"events": [',
        "INVALID_JSON",
        "the body is not valid JSON: Expecting value: line 1 column 13 (char 12)",
    ),
    (
        b"[" * 5000 + b"]" * 5000,
        "INVALID_JSON",
        "the body is not valid JSON: it is nested too deeply",
    ),
]


@pytest.mark.parametrize(("body", "code", "message"), REFUSALS)
async def test_refusals_are_the_standard_librarys(
    client: httpx.AsyncClient, account: OpenedAccount, body: bytes, code: str, message: str
) -> None:
    response = await post(client, account, body)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("body", "key", "used"),
    [
        (one_event('"amount": 5, "amount": 6, "idempotency_key": "dup"'), "dup", 6),
        (b"\xef\xbb\xbf" + one_event('"amount": 2, "idempotency_key": "bom"'), "bom", 2),
        (
            one_event('"amount": 3, "idempotency_key": "utf16"').decode().encode("utf-16"),
            "utf16",
            3,
        ),
        (
            one_event('"amount": 4, "idempotency_key": "1234567890123456789012345"'),
            "1234567890123456789012345",
            4,
        ),
        (
            one_event('"amount": 7, "idempotency_key": "r\\u00e9ponse \\ud83d\\ude00"'),
            "réponse 😀",
            7,
        ),
    ],
)
async def test_what_the_standard_library_accepted_is_accepted(
    client: httpx.AsyncClient, account: OpenedAccount, body: bytes, key: str, used: int
) -> None:
    response = await post(client, account, body)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert (result["idempotency_key"], result["status"], result["used"]) == (key, "accepted", used)


async def test_answers_are_the_bytes_of_starlettes_json(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    recorded = await post(client, account, one_event('"amount": 9, "idempotency_key": "été"'))
    reserved = await client.post(
        "/v1/reservations",
        json={"resource": "tokens", "amount": 5, "idempotency_key": "réserve"},
        headers={"Authorization": f"Bearer {account.service_api_key}"},
    )
    assert (recorded.status_code, reserved.status_code) == (200, 201)
    for response in (recorded, reserved):
        assert response.headers["content-type"] == "application/json"
        compact = json.dumps(response.json(), ensure_ascii=False, separators=(",", ":"))
        assert response.content == compact.encode()
    assert "été" in recorded.text


def standard_decode(body: bytes) -> Any:
    """The decoding `/v1` did with the standard library alone: the reference."""
    if not body:
        return {}
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HttpError(400, "INVALID_JSON", f"the body is not valid JSON: {error}") from None
    found = bad_text_in(decoded, "")
    if found:
        path, problem = found
        raise HttpError(400, "INVALID_TEXT", f"{path.lstrip('.') or 'the body'} {problem}")
    return decoded


def outcome(decode: Any, body: bytes) -> tuple[str, str]:
    """What decoding `body` gives: the value's repr (which tells 1 from 1.0), or the refusal."""
    try:
        return "decoded", repr(decode(body))
    except HttpError as error:
        return error.code, error.message


texts = st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "\udc00"]))
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None)
@given(value=values, ascii_only=st.booleans())
def test_any_json_decodes_as_the_standard_library_decodes_it(value: Any, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert outcome(decode_json_body, body) == outcome(standard_decode, body)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_decode_or_are_refused_as_the_standard_library_does(body: bytes) -> None:
    assert outcome(decode_json_body, body) == outcome(standard_decode, body)
