"""The schema, built from the registered resources, with its extensions."""

from __future__ import annotations

import strawberry
from graphql import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from graph import audit, billing, gdpr, live, members, metering, stats, topups, usage
from graph.billing_mutations import BillingMutation
from graph.context import CloseLoaders
from graph.cost import QueryBudget
from graph.errors import DomainErrorsInQueries, TallySchema, should_mask_error
from graph.organization import build_organization_type, build_query
from graph.scalars import SCALARS
from limits import ResourceRegistry

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000
CACHE_SIZE = 256


def build_schema(registry: ResourceRegistry, *, max_depth: int = MAX_DEPTH) -> strawberry.Schema:
    """The GraphQL schema for these resources; queries nested past `max_depth` are refused.

    The depth and alias rules are built once, so that the validation cache (keyed by the
    rules) answers repeated queries without validating them again."""
    limits: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(max_depth, should_ignore=None),
        max_aliases.create_validator(MAX_ALIASES),
    ]
    usage_type = usage.build_usage_type(registry)
    organization = build_organization_type(
        {
            **usage.organization_fields(usage_type),
            **stats.organization_fields(),
            **billing.organization_fields(),
            **members.organization_fields(),
            **topups.organization_fields(),
            **audit.organization_fields(),
        }
    )
    query = build_query(organization)
    mutation = merge_types(
        "Mutation",
        (
            BillingMutation,
            metering.UsageMutation,
            members.MemberMutation,
            topups.TopUpMutation,
            gdpr.GdprMutation,
        ),
    )
    return TallySchema(
        query=query,
        mutation=mutation,
        subscription=live.build_subscription(usage_type),
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=[
            lambda: ParserCache(maxsize=CACHE_SIZE),
            lambda: ValidationCache(maxsize=CACHE_SIZE),
            lambda: AddValidationRules(limits),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            QueryBudget,
            CloseLoaders,
            DomainErrorsInQueries,
            lambda: MaskErrors(should_mask_error=should_mask_error),
        ],
    )
