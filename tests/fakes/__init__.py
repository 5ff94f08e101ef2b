"""Test doubles: in-memory fakes of the ports, and stand-ins that speak real wire formats on
loopback (PortOne, the webhook receiver, an OIDC issuer)."""
