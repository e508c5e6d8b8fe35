"""Tally's GraphQL API: schema, context, permissions, errors, one module per area."""

from graph import enums

__all__ = ["enums"]
