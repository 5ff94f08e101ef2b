"""Adapters to databases, cryptography and external systems."""
