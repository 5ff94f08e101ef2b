"""Pure rules of the service: standard library only."""
