"""Tally's built-in resources, each an ordinary plugin registered by entry point."""
