"""Integration tests: adapters against real databases and HTTP stand-ins."""
