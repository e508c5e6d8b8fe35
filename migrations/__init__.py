"""Alembic migrations, shipped as package data and run by `core.migrate` (`tally migrate`)."""
