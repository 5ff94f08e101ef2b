"""Stand-ins that speak real wire formats on loopback (PortOne)."""
