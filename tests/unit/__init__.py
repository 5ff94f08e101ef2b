"""Unit tests: pure rules and single adapters."""
