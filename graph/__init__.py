"""Tally's GraphQL API: the Organization page and its operations."""
