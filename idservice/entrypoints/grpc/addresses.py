"""Who is on the other end of a call: the peer's address, and the end user's behind a trusted
proxy (`x-forwarded-for`)."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse

import grpc

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Peer strings (`ipv4:host:port`, one per connection) whose parsed address is kept.
PEERS_REMEMBERED = 4096


def peer_address(
    context: grpc.ServicerContext,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of the connection's peer (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`)."""
    return _peer_host(context.peer() or "")


@functools.lru_cache(maxsize=PEERS_REMEMBERED)
def _peer_host(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # A connection's peer string is the same for each of its calls: parsed once per connection.
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return None
    try:
        return ipaddress.ip_address(urllib.parse.unquote(host))
    except ValueError:
        return None


def end_user_address(context: grpc.ServicerContext, trusted_proxies: tuple[Network, ...]) -> str:
    """The end user's address as a trusted proxy names it in `x-forwarded-for`, else "".

    Callers are internal services and load tests: without a trusted proxy in front there is no
    end-user address to count attempts by, and the peer's own address is not one.
    """
    if not trusted_proxies:
        return ""
    return _forwarded_for(peer_address(context), context, trusted_proxies)


def _forwarded_for(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    context: grpc.ServicerContext,
    trusted_proxies: tuple[Network, ...],
) -> str:
    if peer is None or not any(peer in network for network in trusted_proxies):
        return ""
    forwarded = ""
    for key, value in context.invocation_metadata() or ():
        if key == "x-forwarded-for" and isinstance(value, str):
            forwarded = value
    # The right-most address that is not itself a trusted proxy is the client's.
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return ""
        if not any(address in network for network in trusted_proxies):
            return str(address)
    return ""


def client_address(context: grpc.ServicerContext, trusted_proxies: tuple[Network, ...]) -> str:
    """The end user's address as a trusted proxy names it, else the peer's; "" if neither."""
    peer = peer_address(context)  # read once: each read is a call into grpc's core
    address = _forwarded_for(peer, context, trusted_proxies) if trusted_proxies else ""
    if address:
        return address
    return "" if peer is None else str(peer)
