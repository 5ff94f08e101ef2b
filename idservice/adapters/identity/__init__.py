"""Identity verification providers (PortOne, sandbox)."""
