"""A Stripe that answers what localstripe cannot (prices, billing_cycle_anchor,
proration_behavior, invoice items, Checkout), as strict as Stripe on parameters: a name
that stripe-python's generated param TypedDicts do not define is refused with a 400, and a
repeated idempotency key replays the first answer, as Stripe does."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from typing import Any

import stripe

from tests.billing.stripe.support import RecordingClient, invoice_object, subscription_object

PARAMS: dict[tuple[str, str], Any] = {
    ("POST", "customers"): stripe.params.CustomerCreateParams,
    ("POST", "subscriptions"): stripe.params.SubscriptionCreateParams,
    ("POST", "subscription"): stripe.params.SubscriptionUpdateParams,
    ("POST", "invoiceitems"): stripe.params.InvoiceItemCreateParams,
    ("POST", "checkout/sessions"): stripe.params.checkout.SessionCreateParams,
    ("POST", "invoices"): stripe.params.InvoiceCreateParams,
    ("POST", "invoice/finalize"): stripe.params.InvoiceFinalizeInvoiceParams,
    ("POST", "invoice/pay"): stripe.params.InvoicePayParams,
}


def top_level(form: Mapping[str, list[str]]) -> set[str]:
    """The parameter names of a form-encoded body: `items[0][price]` is `items`."""
    return {name.split("[", 1)[0] for name in form}


class StrictStripe:
    """Customers, subscriptions, invoice items and Checkout sessions kept in memory; every
    request recorded by `client` (a RecordingClient)."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.prefix = uuid.uuid4().hex[:8]
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoice_items: list[dict[str, Any]] = []
        self.invoices: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, tuple[int, Mapping[str, Any]]] = {}
        self.client = RecordingClient(self.respond)

    def id(self, kind: str, number: int) -> str:
        """The id of the `number`th object answered (ids are unique across fakes, as the
        tests share a database)."""
        return f"{kind}_{self.prefix}{number}"

    def posts(self, path: str) -> list[dict[str, list[str]]]:
        """The forms POSTed to `path` (each idempotency key once, as Stripe applies them)."""
        seen: set[str] = set()
        forms = []
        for method, where, form, headers in self.client.requests:
            key = headers.get("Idempotency-Key", "")
            if method == "POST" and where == path and key not in seen:
                seen.add(key)
                forms.append(form)
        return forms

    def keys(self, path: str) -> list[str]:
        """The idempotency keys sent with the POSTs to `path`, in order."""
        return [
            headers.get("Idempotency-Key", "")
            for method, where, _, headers in self.client.requests
            if method == "POST" and where == path
        ]

    def respond(
        self, method: str, path: str, form: Mapping[str, list[str]]
    ) -> tuple[int, Mapping[str, Any]]:
        headers = self.client.requests[-1][3]
        key = headers.get("Idempotency-Key")
        if key and key in self.replies:
            return self.replies[key]
        parts = path.removeprefix("/v1/").split("/")
        kind = "subscription" if parts[0] == "subscriptions" and len(parts) == 2 else None
        if parts[0] == "invoices" and len(parts) == 3:
            kind = f"invoice/{parts[2]}"
        allowed = PARAMS.get((method, kind or "/".join(parts)))
        if allowed is not None:
            unknown = top_level(form) - set(allowed.__annotations__)
            if unknown:
                message = f"Received unknown parameter: {', '.join(sorted(unknown))}"
                return 400, {"error": {"type": "invalid_request_error", "message": message}}
        reply = self._answer(method, parts, form)
        if key:
            self.replies[key] = reply
        return reply

    def _answer(
        self, method: str, parts: list[str], form: Mapping[str, list[str]]
    ) -> tuple[int, Mapping[str, Any]]:
        number = next(self.ids)
        if parts == ["customers"]:
            return 200, {"id": self.id("cus", number), "object": "customer"}
        if parts == ["subscriptions"]:
            price = form["items[0][price]"][0]
            created = subscription_object(form["customer"][0], id=self.id("sub", number))
            created["items"]["data"][0]["price"]["id"] = price
            created["status"] = "trialing" if "trial_end" in form else "active"
            self.subscriptions[created["id"]] = created
            return 200, created
        if parts[0] == "subscriptions" and parts[1] in self.subscriptions:
            found = self.subscriptions[parts[1]]
            if method == "POST":
                if "items[0][price]" in form:
                    found["items"]["data"][0]["price"]["id"] = form["items[0][price]"][0]
                for name, values in form.items():
                    if name.startswith("metadata["):
                        found["metadata"][name[9:-1]] = values[0]
                if "cancel_at_period_end" in form:
                    found["cancel_at_period_end"] = form["cancel_at_period_end"] == ["true"]
                invoiced = form.get("proration_behavior") == ["always_invoice"]
                found["latest_invoice"] = self.id("in", number) if invoiced else None
            return 200, found
        if parts == ["invoices"] and method == "POST":
            invoice = invoice_object(
                form["customer"][0], id=self.id("in", number), status="draft",
                currency=form["currency"][0], subtotal=0, total=0, amount_due=0,
                billing_reason="manual",
            )  # fmt: skip
            self.invoices[invoice["id"]] = invoice
            return 200, invoice
        if parts[0] == "invoices" and parts[1] in self.invoices:
            invoice = self.invoices[parts[1]]
            if parts[2:] == ["finalize"] and invoice["status"] == "draft":
                invoice.update(status="open", number=f"N-{number}")
            elif parts[2:] == ["pay"] and invoice["status"] == "open":
                invoice.update(status="paid", amount_paid=invoice["total"], amount_due=0)
            elif parts[2:]:
                message = f"invoice {parts[1]} is {invoice['status']}"
                return 400, {"error": {"type": "invalid_request_error", "message": message}}
            return 200, invoice
        if parts[0] == "invoices" and len(parts) == 2:
            return 200, invoice_object(
                self.id("cus", 1), id=parts[1], status="open", number=f"N-{number}"
            )
        if parts == ["invoiceitems"]:
            item = {"id": self.id("ii", number), "object": "invoiceitem",
                    **{name: values[0] for name, values in form.items()}}  # fmt: skip
            self.invoice_items.append(item)
            if "invoice" in form and form["invoice"][0] in self.invoices:
                invoice = self.invoices[form["invoice"][0]]
                amount = int(form["amount"][0])
                invoice["subtotal"] += amount
                invoice["total"] += amount
                invoice["amount_due"] += amount
            return 200, item
        if parts == ["checkout", "sessions"]:
            session = self.id("cs", number)
            url = f"https://checkout.stripe.com/c/pay/{session}"
            return 200, {"id": session, "object": "checkout.session", "mode": "setup", "url": url}
        return 404, {"error": {"type": "invalid_request_error", "message": "no such path"}}
