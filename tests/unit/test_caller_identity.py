"""Who is calling, for the access audit: the client certificate's subject under mutual TLS, a
plain service name claimed in `x-caller-service`, or `unknown`; and from where."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import cast

import grpc
import pytest

from idservice.config import Settings
from idservice.entrypoints.grpc.addresses import client_address, end_user_address
from idservice.entrypoints.grpc.caller import caller_service


class Context:
    """The parts of a grpc.ServicerContext the functions read."""

    def __init__(
        self,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        auth: Mapping[str, list[bytes]] | None = None,
        peer: str = "ipv4:10.1.2.3:50000",
    ) -> None:
        self._metadata, self._auth, self._peer = tuple(metadata), dict(auth or {}), peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return self._peer


def ctx(**kwargs: object) -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, Context(**kwargs))  # type: ignore[arg-type]


CERTIFIED = {"x509_subject": [b"CN=app-backend,O=Example"], "x509_common_name": [b"app-backend"]}


def test_under_mutual_tls_the_certificate_names_the_caller() -> None:
    context = ctx(auth=CERTIFIED, metadata=[("x-caller-service", "impostor")])
    assert caller_service(context, mutual_tls=True) == "cert:CN=app-backend,O=Example"
    only_cn = ctx(auth={"x509_common_name": [b"app-backend"]})
    assert caller_service(only_cn, mutual_tls=True) == "cert:app-backend"
    odd = ctx(auth={"x509_subject": [b"CN=a\nb\x00c," + b"x" * 300]})
    actor = caller_service(odd, mutual_tls=True)
    assert actor.startswith("cert:CN=abc,") and len(actor) == 128


def test_without_mutual_tls_a_certificate_is_not_looked_at() -> None:
    assert caller_service(ctx(auth=CERTIFIED), mutual_tls=False) == "unknown"


@pytest.mark.parametrize(
    ("claimed", "actor"),
    [
        ("app-backend", "claimed:app-backend"),
        ("billing.v2/worker@prod", "claimed:billing.v2/worker@prod"),
        ("two words", "unknown"),
        ("-leading", "unknown"),
        ("x" * 65, "unknown"),
        ("", "unknown"),
        # Kept for years in a chain that cannot forget: no personal data, no bare numbers.
        ("900101-1234567", "unknown"),
        ("svc-9001011234567", "unknown"),
        ("svc-010-1234-5678", "unknown"),
        ("svc/010/1234/5678", "unknown"),
        ("svc@010@1234@5678", "unknown"),
        ("svc:010/1234.5678", "unknown"),
        ("svc/82/10/1234/5678", "unknown"),
        ("12345", "unknown"),
        ("billing-2", "claimed:billing-2"),
    ],
)
def test_a_claimed_name_is_taken_when_plain(claimed: str, actor: str) -> None:
    context = ctx(metadata=[("x-caller-service", claimed)])
    assert caller_service(context, mutual_tls=False) == actor
    assert caller_service(context, mutual_tls=True) == actor  # no certificate subject seen


def test_the_client_is_the_end_user_behind_a_trusted_proxy_else_the_peer() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    forwarded = [("x-forwarded-for", "203.0.113.9, 10.9.9.9")]
    assert client_address(ctx(metadata=forwarded), proxies) == "203.0.113.9"
    assert client_address(ctx(metadata=forwarded), ()) == "10.1.2.3"
    assert client_address(ctx(peer="ipv6:[::1]:4000"), ()) == "::1"
    assert client_address(ctx(peer="unix:/tmp/socket"), ()) == ""


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        # Proxies write a hop with its port, IPv6 in brackets.
        (["203.0.113.9:51000, 10.9.9.9"], "203.0.113.9"),
        (["[2001:db8::7]:51000"], "2001:db8::7"),
        (["[2001:db8::7]"], "2001:db8::7"),
        (["2001:db8::7"], "2001:db8::7"),
        # An IPv4-mapped proxy is the IPv4 proxy; a mapped client is its IPv4 address.
        (["203.0.113.9, ::ffff:10.9.9.9"], "203.0.113.9"),
        (["::ffff:203.0.113.9"], "203.0.113.9"),
        # Repeated headers read as one list, in order.
        (["198.51.100.1", "203.0.113.9, 10.9.9.9"], "203.0.113.9"),
        # A hop that is no address stops at the nearest trusted one: counted, never uncounted.
        (["203.0.113.9, unknown"], "10.1.2.3"),
        (["unknown, 10.9.9.9"], "10.9.9.9"),
        (["203.0.113.9:port"], "10.1.2.3"),
        (["[2001:db8::7]x"], "10.1.2.3"),
        # No header, or proxies alone: no end user (no limit per address).
        ([], ""),
        (["10.9.9.9, 10.8.8.8"], ""),
    ],
)
def test_the_end_user_behind_trusted_proxies(forwarded: list[str], client: str) -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    metadata = [("x-forwarded-for", value) for value in forwarded]
    assert end_user_address(ctx(metadata=metadata), proxies) == client
    # A dual-stack listener sees an IPv4 proxy as IPv4-mapped IPv6: still the trusted proxy.
    mapped = ctx(metadata=metadata, peer="ipv6:[::ffff:10.1.2.3]:50000")
    assert end_user_address(mapped, proxies) == client
    assert end_user_address(ctx(metadata=metadata), ()) == ""


def test_proxies_configured_in_ipv4_mapped_form_are_still_trusted() -> None:
    """`::ffff:10.0.0.0/104` (how a dual-stack listener's IPv4 peers used to have to be written)
    is the IPv4 network it stands for, and `::/0` still takes in every IPv4 peer."""

    def proxies(configured: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        env = {"IDSERVICE_ENV": "development", "IDSERVICE_TRUSTED_PROXIES": configured}
        return Settings.from_env(env).trusted_proxies

    forwarded = [("x-forwarded-for", "203.0.113.9")]
    for configured in ("::ffff:10.0.0.0/104", "::ffff:10.1.2.0/120, 2001:db8::/32"):
        for peer in ("ipv4:10.1.2.3:50000", "ipv6:[::ffff:10.1.2.3]:50000"):
            address = end_user_address(ctx(metadata=forwarded, peer=peer), proxies(configured))
            assert address == "203.0.113.9", (configured, peer)
    assert ipaddress.ip_network("0.0.0.0/0") in proxies("::/0")
