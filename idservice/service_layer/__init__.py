"""Use cases, each a function over a unit of work."""
