"""Documents / products: the knowledge base items indexed, by kind (a gauge)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from limits import ErrorCode, PreparedEvent, Resource, UsageRejected, hookimpl

KINDS = ("document", "product", "faq", "web_page")

DOCUMENTS = Resource(
    key="documents",
    label="Documents / Products",
    unit="items",
    kind="gauge",
    attributes=("kind",),
    description="Knowledge base items indexed: documents, products, FAQ entries, web pages",
    order=20,
)


@hookimpl
def tally_register_resources() -> Iterable[Resource]:
    return [DOCUMENTS]


@hookimpl
def tally_validate_batch(resource: Resource, events: Sequence[PreparedEvent]) -> None:
    if resource.key != DOCUMENTS.key:
        return
    for position, event in enumerate(events):
        kind = event.attributes.get("kind", "document")
        if kind not in KINDS:
            raise UsageRejected(
                ErrorCode.INVALID_ATTRIBUTE,
                f"document kind must be one of {', '.join(KINDS)}, not {kind!r}",
                position,
            )
