"""Tally's kernel: configuration, database, clock, organizations and API keys."""
