"""The machine hot path over HTTP (`/v1`): usage, checks and reservations, for service keys.

Errors are JSON `{"error": {"code", "message"}}` with a fitting status. A batch is validated
whole before anything is applied; a single event shares its transaction with concurrent
ones of the same organization (group commit). An idempotency key already recorded with
another resource or amount refuses the whole request: 409 IDEMPOTENCY_KEY_REUSED, naming the
event in a batch.

Bad input is refused before anything else with a 400 naming the field (`events[2].amount`):
text with a NUL or an invalid character anywhere in the body, an integer that is not a JSON
integer (`graph.scalars.integer_problem`, the rule of GraphQL's `BigInt` too), a required
field missing (naming a misspelt one). Bodies are capped by `tally.http.limits`.

Bodies are decoded by orjson and answers encoded by it (`FastJSONResponse`); a body orjson
would answer otherwise than the standard library (one it refuses: NaN, a lone surrogate, a BOM,
UTF-16; or one with an integer past 64 bits, which orjson turns into a float) is decoded again
by the standard library, whose answer stands, so the refusals name the same fields.
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.auth import Principal
from core.orgs import Organization
from graph.scalars import bad_text_in, integer_problem, text_problem
from limits import Decision, Reservation, UsageInput
from limits.batcher import GroupCommitter
from limits.service import DEFAULT_TTL_SECONDS
from limits.types import refuse_reused
from tally.http.errors import HttpError
from tally.http.ratelimit import authenticated
from tally.runtime import Runtime

MAX_EVENTS = 1000
_FIELDS = ("resource", "amount", "idempotency_key", "occurred_at")
_RESERVATION_FIELDS = ("resource", "amount", "idempotency_key", "ttl_seconds")
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
"""A `bytes.translate` table: every digit becomes 0, every other byte a space."""
_WIDE_INTEGER = b"0" * 19
"""19 digits in a row: an integer orjson may turn into a float (past -2**63 or 2**64 - 1)."""


class FastJSONResponse(Response):
    """A JSON answer encoded by orjson: compact UTF-8, as Starlette's `JSONResponse`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _decision_json(decision: Decision) -> dict[str, Any]:
    rejected = decision.status == "rejected"
    return {
        "idempotency_key": decision.idempotency_key,
        "status": decision.status,
        "used": decision.used,
        "limit": decision.limit,
        "remaining": decision.remaining,
        "error": {"code": decision.error_code, "message": decision.explanation}
        if rejected
        else None,
    }


def _reservation_json(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "resource": reservation.resource,
        "amount": reservation.amount,
        "status": reservation.status,
        "expires_at": reservation.expires_at.isoformat(),
        "idempotency_key": reservation.idempotency_key,
    }


async def _json_body(request: Request) -> Any:
    """The decoded JSON body of the request (see `decode_json_body`); its size is capped
    upstream."""
    return decode_json_body(await request.body())


def decode_json_body(body: bytes) -> Any:
    """The decoded JSON `body` (`{}` when empty), as the standard library decodes it; refused
    with a 400 when it is not JSON, and with a 400 naming the field when a string in it holds
    a NUL or an invalid character."""
    if not body:
        return {}
    if _WIDE_INTEGER not in body.translate(_DIGITS_AS_ZEROS):
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # decoded again below, for the standard library's answer
        else:
            # orjson takes valid UTF-8 and no lone surrogate: only an escaped NUL gets through
            return _checked_text(decoded) if b"\\u0000" in body else decoded
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HttpError(400, "INVALID_JSON", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise _too_deep() from None
    return _checked_text(decoded)


def _checked_text(decoded: Any) -> Any:
    """`decoded`, unless a string in it (a key or a value) holds a NUL or a lone surrogate:
    then a 400 naming its field."""
    try:
        found = bad_text_in(decoded, "")
    except RecursionError:
        raise _too_deep() from None
    if found:
        path, problem = found
        raise HttpError(400, "INVALID_TEXT", f"{path.lstrip('.') or 'the body'} {problem}")
    return decoded


def _too_deep() -> HttpError:
    return HttpError(400, "INVALID_JSON", "the body is not valid JSON: it is nested too deeply")


def _integer(value: Any, where: str) -> int:
    """`value` when it is a JSON integer (the one rule of both APIs), else a 400."""
    problem = integer_problem(value)
    if problem is not None:
        raise HttpError(400, "INVALID_AMOUNT", f"{where} {problem}")
    number: int = value
    return number


def _missing(given: dict[str, Any], required: tuple[str, ...], known: tuple[str, ...]) -> str:
    """What a body lacks, naming the given fields that look like misspellings of them."""
    missing = [name for name in required if name not in given]
    hints = []
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, missing, n=1, cutoff=0.7)
            if close:
                hints.append(f'unknown field "{name}": did you mean "{close[0]}"?')
    needs = " and ".join(f'"{name}"' for name in missing)
    return f"needs {needs}" + ("; " + "; ".join(hints) if hints else "")


def _timestamp(value: Any, index: int) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        instant = None
    if instant is None:
        raise HttpError(
            400, "INVALID_TIMESTAMP", f"events[{index}].occurred_at must be an ISO 8601 string"
        )
    return instant


def _usage_inputs(body: Any, *, keys_required: bool) -> list[UsageInput]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise HttpError(400, "INVALID_BODY", 'the body must be {"events": [...]}')
    events = body["events"]
    if not events:
        raise HttpError(400, "INVALID_BODY", "events must hold 1 to 1000 events")
    if len(events) > MAX_EVENTS:
        raise HttpError(413, "TOO_MANY_EVENTS", f"{len(events)} events; at most {MAX_EVENTS}")
    required = ("resource", "amount", *(() if not keys_required else ("idempotency_key",)))
    inputs = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise HttpError(400, "INVALID_BODY", f"events[{index}] must be an object")
        if "resource" not in event or "amount" not in event:
            raise HttpError(
                400, "INVALID_BODY", f"events[{index}] {_missing(event, required, _FIELDS)}"
            )
        amount = _integer(event["amount"], f"events[{index}].amount")
        key = event.get("idempotency_key")
        if key is None and not keys_required:
            key = f"check:{uuid.uuid4().hex}"
        inputs.append(
            UsageInput(
                resource=event["resource"],
                amount=amount,
                idempotency_key=key if key is not None else "",
                occurred_at=_timestamp(event.get("occurred_at"), index),
                attributes={k: v for k, v in event.items() if k not in _FIELDS},
            )
        )
    return inputs


Handler = Callable[[Request, Principal, Organization], Awaitable[Response]]


class UsageApi:
    """The `/v1` routes over one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.committer = GroupCommitter(runtime.db, runtime.engine)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/usage", self._guard(self.record), methods=["POST"]),
            Route("/v1/usage/check", self._guard(self.check), methods=["POST"]),
            Route("/v1/reservations", self._guard(self.reserve), methods=["POST"]),
            Route("/v1/reservations/{id}/commit", self._guard(self.commit), methods=["POST"]),
            Route("/v1/reservations/{id}/release", self._guard(self.release), methods=["POST"]),
        ]

    def _guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            for name, value in request.path_params.items():
                problem = text_problem(str(value))
                if problem:
                    raise HttpError(400, "INVALID_TEXT", f"the {name} in the path {problem}")
            found = await authenticated(request, self.runtime)
            if found is None:
                raise HttpError(
                    401,
                    "UNAUTHENTICATED",
                    "a valid API key is required: send the header Authorization: Bearer <key>",
                    {"WWW-Authenticate": "Bearer"},
                )
            principal, organization = found
            if not principal.may_record_usage:
                raise HttpError(
                    403, "FORBIDDEN", "usage needs a service key or an owner's or admin's key"
                )
            return await handler(request, principal, organization)

        return endpoint

    async def record(self, request: Request, _: Principal, organization: Organization) -> Response:
        inputs = _usage_inputs(await _json_body(request), keys_required=True)
        if len(inputs) == 1:
            event = self.runtime.engine.prepare(organization, inputs)[0]
            decisions = [await self.committer.apply(organization, event)]
            refuse_reused(decisions)
        else:
            decisions = await self.runtime.usage.record(organization, inputs)
        return FastJSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def check(self, request: Request, _: Principal, organization: Organization) -> Response:
        inputs = _usage_inputs(await _json_body(request), keys_required=False)
        decisions = await self.runtime.usage.check(organization, inputs)
        return FastJSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def reserve(self, request: Request, _: Principal, organization: Organization) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise HttpError(400, "INVALID_BODY", "a reservation is a JSON object")
        if "resource" not in body or "amount" not in body:
            required = ("resource", "amount", "idempotency_key")
            raise HttpError(400, "INVALID_BODY", "a reservation "
                           f"{_missing(body, required, _RESERVATION_FIELDS)} (ttl_seconds "
                           "optional)")  # fmt: skip
        amount = _integer(body["amount"], "amount")
        ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if integer_problem(ttl) is not None:
            raise HttpError(400, "INVALID_TTL", f"ttl_seconds {integer_problem(ttl)}")
        outcome = await self.runtime.usage.reserve(
            organization, body["resource"], amount,
            ttl_seconds=ttl, idempotency_key=body.get("idempotency_key") or "",
        )  # fmt: skip
        answer = _decision_json(outcome.decision)
        answer["reservation"] = (
            _reservation_json(outcome.reservation) if outcome.reservation else None
        )
        return FastJSONResponse(
            answer, status_code=201 if outcome.decision.status == "accepted" else 200
        )

    async def commit(self, request: Request, _: Principal, organization: Organization) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "amount" not in body:
            given = body if isinstance(body, dict) else {}
            raise HttpError(
                400, "INVALID_BODY", f"a commit {_missing(given, ('amount',), ('amount',))}"
            )
        amount = _integer(body["amount"], "amount")
        attributes = {k: v for k, v in body.items() if k != "amount"}
        decision = await self.runtime.usage.commit(
            organization, request.path_params["id"], amount, attributes
        )
        return FastJSONResponse(_decision_json(decision))

    async def release(self, request: Request, _: Principal, organization: Organization) -> Response:
        reservation = await self.runtime.usage.release(organization, request.path_params["id"])
        return FastJSONResponse({"reservation": _reservation_json(reservation)})
