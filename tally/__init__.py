"""Tally, the product: the ASGI app, the command line, the composition root, HTTP routes
and the demo."""
