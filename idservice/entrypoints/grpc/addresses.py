"""Who is on the other end of a call: the peer's address, and the end user's behind a trusted
proxy (`x-forwarded-for`)."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse

import grpc

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Peer strings (`ipv4:host:port`, one per connection) whose parsed address is kept.
PEERS_REMEMBERED = 4096


def peer_address(context: grpc.ServicerContext) -> IpAddress | None:
    """The IP address of the connection's peer (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`)."""
    return _peer_host(context.peer() or "")


@functools.lru_cache(maxsize=PEERS_REMEMBERED)
def _peer_host(peer: str) -> IpAddress | None:
    # A connection's peer string is the same for each of its calls: parsed once per connection.
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return None
    try:
        return _plain(ipaddress.ip_address(urllib.parse.unquote(host)))
    except ValueError:
        return None


def _plain(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a dual-stack listener sees an IPv4
    peer) as the IPv4 address it is, so an IPv4 proxy network contains it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _hop_address(hop: str) -> IpAddress | None:
    """One `x-forwarded-for` entry: an address, bare or with a port (`1.2.3.4:5678`,
    `[2001:db8::1]:5678`, `[2001:db8::1]`), as proxies write them; None for anything else."""
    if hop.startswith("["):
        host, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    elif hop.count(":") == 1:  # IPv4 with a port; an IPv6 address has two colons at least
        host, _, port = hop.partition(":")
        if not port.isdigit():
            return None
    else:
        host = hop
    try:
        return _plain(ipaddress.ip_address(host))
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
    peer: IpAddress | None,
    context: grpc.ServicerContext,
    trusted_proxies: tuple[Network, ...],
) -> str:
    if peer is None or not any(peer in network for network in trusted_proxies):
        return ""
    # Several headers read as one list, in order (as HTTP joins repeated fields).
    hops = [
        part.strip()
        for key, value in context.invocation_metadata() or ()
        if key == "x-forwarded-for" and isinstance(value, str)
        for part in value.split(",")
        if part.strip()
    ]
    # The right-most address that is not itself a trusted proxy is the client's. A hop that is
    # no address (`unknown`, a proxy's name) stops the walk at the nearest address vouched for,
    # the last trusted proxy's: such calls are still counted (together), never let through
    # uncounted. Without the header, or with proxies alone in it, there is no end user.
    nearest = peer
    for hop in reversed(hops):
        address = _hop_address(hop)
        if address is None:
            return str(nearest)
        if not any(address in network for network in trusted_proxies):
            return str(address)
        nearest = address
    return ""


def client_address(context: grpc.ServicerContext, trusted_proxies: tuple[Network, ...]) -> str:
    """The end user's address as a trusted proxy names it, else the peer's; "" if neither."""
    peer = peer_address(context)  # read once: each read is a call into grpc's core
    address = _forwarded_for(peer, context, trusted_proxies) if trusted_proxies else ""
    if address:
        return address
    return "" if peer is None else str(peer)
