"""The machine hot path over HTTP (`/v1`): usage, checks and reservations, for service keys.

Errors are JSON `{"error": {"code", "message"}}` with a fitting status. A batch is validated
whole before anything is applied; a single event shares its transaction with concurrent
ones of the same organization (group commit).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.auth import Principal, authenticate_with_organization, bearer_secret
from core.orgs import Organization
from limits import Decision, Reservation, UsageInput
from limits.batcher import GroupCommitter
from limits.service import DEFAULT_TTL_SECONDS
from tally.http.errors import HttpError
from tally.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 1000
_FIELDS = ("resource", "amount", "idempotency_key", "occurred_at")


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
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HttpError(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HttpError(400, "INVALID_JSON", f"the body is not valid JSON: {error}") from None


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
    inputs = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise HttpError(400, "INVALID_BODY", f"events[{index}] must be an object")
        if "resource" not in event or "amount" not in event:
            raise HttpError(400, "INVALID_BODY", f"events[{index}] needs resource and amount")
        key = event.get("idempotency_key")
        if key is None and not keys_required:
            key = f"check:{uuid.uuid4().hex}"
        inputs.append(
            UsageInput(
                resource=event["resource"],
                amount=event["amount"],
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
            async with self.runtime.db.read() as session:
                found = await authenticate_with_organization(
                    session, bearer_secret(request.headers.get("authorization"))
                )
            if found is None:
                raise HttpError(401, "UNAUTHENTICATED", "a valid API key is required")
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
        else:
            decisions = await self.runtime.usage.record(organization, inputs)
        return JSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def check(self, request: Request, _: Principal, organization: Organization) -> Response:
        inputs = _usage_inputs(await _json_body(request), keys_required=False)
        decisions = await self.runtime.usage.check(organization, inputs)
        return JSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def reserve(self, request: Request, _: Principal, organization: Organization) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "resource" not in body or "amount" not in body:
            raise HttpError(400, "INVALID_BODY", "a reservation needs resource, amount and "
                           "idempotency_key (ttl_seconds optional)")  # fmt: skip
        ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise HttpError(400, "INVALID_TTL", "ttl_seconds must be an integer")
        outcome = await self.runtime.usage.reserve(
            organization, body["resource"], body["amount"],
            ttl_seconds=ttl, idempotency_key=body.get("idempotency_key") or "",
        )  # fmt: skip
        answer = _decision_json(outcome.decision)
        answer["reservation"] = (
            _reservation_json(outcome.reservation) if outcome.reservation else None
        )
        return JSONResponse(
            answer, status_code=201 if outcome.decision.status == "accepted" else 200
        )

    async def commit(self, request: Request, _: Principal, organization: Organization) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "amount" not in body:
            raise HttpError(400, "INVALID_BODY", "a commit needs the actual amount")
        attributes = {k: v for k, v in body.items() if k != "amount"}
        decision = await self.runtime.usage.commit(
            organization, request.path_params["id"], body["amount"], attributes
        )
        return JSONResponse(_decision_json(decision))

    async def release(self, request: Request, _: Principal, organization: Organization) -> Response:
        reservation = await self.runtime.usage.release(organization, request.path_params["id"])
        return JSONResponse({"reservation": _reservation_json(reservation)})
