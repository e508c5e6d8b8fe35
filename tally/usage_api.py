"""The machine hot path over HTTP (`/v1`): usage, checks and reservations, for service keys.

Errors are JSON `{"error": {"code", "message"}}` with a fitting status. A batch is validated
whole before anything is applied; a single event shares its transaction with concurrent
ones of the same organization (group commit).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from limits import Decision, Reservation, ReservationError, UsageInput, UsageRejected
from limits.batcher import GroupCommitter
from tally.auth import Principal, authenticate_with_organization, bearer_secret
from tally.orgs import Organization, Role
from tally.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 1000
DEFAULT_TTL_SECONDS = 300
USAGE_ROLES = (Role.OWNER, Role.ADMIN)
_FIELDS = ("resource", "amount", "idempotency_key", "occurred_at")


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


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
        raise ApiError(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, "INVALID_JSON", f"the body is not valid JSON: {error}") from None


def _timestamp(value: Any, index: int) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        instant = None
    if instant is None:
        raise ApiError(
            400, "INVALID_TIMESTAMP", f"events[{index}].occurred_at must be an ISO 8601 string"
        )
    return instant


def _usage_inputs(body: Any, *, keys_required: bool) -> list[UsageInput]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ApiError(400, "INVALID_BODY", 'the body must be {"events": [...]}')
    events = body["events"]
    if not events:
        raise ApiError(400, "INVALID_BODY", "events must hold 1 to 1000 events")
    if len(events) > MAX_EVENTS:
        raise ApiError(413, "TOO_MANY_EVENTS", f"{len(events)} events; at most {MAX_EVENTS}")
    inputs = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ApiError(400, "INVALID_BODY", f"events[{index}] must be an object")
        if "resource" not in event or "amount" not in event:
            raise ApiError(400, "INVALID_BODY", f"events[{index}] needs resource and amount")
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
            try:
                async with self.runtime.db.read() as session:
                    found = await authenticate_with_organization(
                        session, bearer_secret(request.headers.get("authorization"))
                    )
                if found is None:
                    raise ApiError(401, "UNAUTHENTICATED", "a valid API key is required")
                principal, organization = found
                if not principal.service and not principal.has_role(*USAGE_ROLES):
                    raise ApiError(
                        403, "FORBIDDEN", "usage needs a service key or an owner's or admin's key"
                    )
                return await handler(request, principal, organization)
            except ApiError as error:
                return error_response(error.status, error.code, error.message)
            except UsageRejected as error:
                return error_response(400, error.code, error.message)
            except ReservationError as error:
                status = 404 if error.code == "NOT_FOUND" else 409
                return error_response(status, error.code, error.message)

        return endpoint

    async def record(self, request: Request, _: Principal, organization: Organization) -> Response:
        inputs = _usage_inputs(await _json_body(request), keys_required=True)
        events = self.runtime.engine.prepare(organization, inputs)
        if len(events) == 1:
            decisions = [await self.committer.apply(organization, events[0])]
        else:
            async with self.runtime.db.write() as session:
                decisions = await self.runtime.engine.apply(session, organization, events)
        return JSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def check(self, request: Request, _: Principal, organization: Organization) -> Response:
        inputs = _usage_inputs(await _json_body(request), keys_required=False)
        async with self.runtime.db.read() as session:
            decisions = await self.runtime.engine.check(session, organization, inputs)
        return JSONResponse({"results": [_decision_json(d) for d in decisions]})

    async def reserve(self, request: Request, _: Principal, organization: Organization) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "resource" not in body or "amount" not in body:
            raise ApiError(400, "INVALID_BODY", "a reservation needs resource, amount and "
                           "idempotency_key (ttl_seconds optional)")  # fmt: skip
        ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise ApiError(400, "INVALID_TTL", "ttl_seconds must be an integer")
        async with self.runtime.db.write() as session:
            outcome = await self.runtime.engine.reserve(
                session, organization, body["resource"], body["amount"],
                ttl=timedelta(seconds=ttl), idempotency_key=body.get("idempotency_key") or "",
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
            raise ApiError(400, "INVALID_BODY", "a commit needs the actual amount")
        attributes = {k: v for k, v in body.items() if k != "amount"}
        async with self.runtime.db.write() as session:
            decision = await self.runtime.engine.commit(
                session, organization, request.path_params["id"], body["amount"], attributes
            )
        return JSONResponse(_decision_json(decision))

    async def release(self, request: Request, _: Principal, organization: Organization) -> Response:
        async with self.runtime.db.write() as session:
            reservation = await self.runtime.engine.release(
                session, organization, request.path_params["id"]
            )
        return JSONResponse({"reservation": _reservation_json(reservation)})
