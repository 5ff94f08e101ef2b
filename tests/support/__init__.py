"""Test support: clients, servers, PostgreSQL clusters."""
