"""Tally's kernel: configuration, database, clock, ids, errors, organizations and API keys,
the migration runner. It imports no other package of the project."""
