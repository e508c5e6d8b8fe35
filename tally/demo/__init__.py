"""The demo organization: seeded on an empty database, with a history of usage."""
