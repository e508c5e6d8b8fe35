"""Identifiers and secrets: random, unguessable, made in one place."""

from __future__ import annotations

import os
import secrets


def new_id() -> str:
    """32 random hex digits (as many random bits as a UUID4's hex)."""
    return os.urandom(16).hex()


def new_secret(n_bytes: int = 32) -> str:
    """A URL-safe random secret of `n_bytes` bytes of entropy."""
    return secrets.token_urlsafe(n_bytes)
