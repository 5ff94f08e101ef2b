"""How each IDSERVICE_* value is read: one parser per kind of value (`config.Settings` names
the variable when one raises ValueError)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Longest duration any setting takes: a century. Every duration is added to or taken from the
# present (an expiry, a retention cut-off), and past about 2.7 million days that leaves the
# dates a computer keeps, failing every call or purge that does the sum instead of start-up.
MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Parse `90s`, `15m`, `12h`, `5d` (contract §1), at most MAX_DURATION."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a number with a unit s, m, h or d (e.g. 15m)")
    duration = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if duration > MAX_DURATION:
        raise ValueError(f"must be at most {MAX_DURATION.days}d (a century)")
    return duration


def parse_app_id(text: str) -> str:
    """Kakao's app id: the number `access_token_info` answers (contract §1)."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError("expected the numeric app id Kakao's access_token_info returns")
    return value


# Limits per end-user address: `<count>/<window>` (20/1m); windows of a day at most, which the
# purge of attempt counters (a day after their window began) relies on.
MAX_RATE_WINDOW = timedelta(days=1)
MAX_RATE_COUNT = 1_000_000


def parse_rate(text: str) -> tuple[int, timedelta]:
    """Parse a limit `20/1m`: at most 20 per window of 1 minute."""
    count, sep, window = text.partition("/")
    if not sep or not count.strip().isdigit():
        raise ValueError("expected <count>/<window>, e.g. 20/1m")
    value, span = int(count.strip()), parse_duration(window)
    if not 1 <= value <= MAX_RATE_COUNT:
        raise ValueError(f"the count must be between 1 and {MAX_RATE_COUNT}")
    if not timedelta(0) < span <= MAX_RATE_WINDOW:
        raise ValueError("the window must be longer than 0s and at most 1d")
    return value, span


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_int(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return parse


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_hostport(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:50051")
    return text.strip()


def parse_url(text: str) -> str:
    value = text.strip()
    if not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
        raise ValueError("expected an http(s) URL")
    # A scheme is case-insensitive (RFC 3986 §3.1); its canonical form is lower case, which
    # every later check (plaintext http:// in production) compares against.
    scheme, _, rest = value.partition("://")
    return f"{scheme.lower()}://{rest}".rstrip("/")


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        networks = [ipaddress.ip_network(item, strict=False) for item in parse_list(text)]
    except ValueError:
        raise ValueError("expected comma-separated CIDRs, e.g. 10.0.0.0/8") from None
    return tuple(n for network in networks for n in as_compared(network))


# IPv4 addresses seen through a dual-stack listener (`::ffff:10.0.0.1`) are compared as IPv4
# (entrypoints/grpc/addresses.py), so a network written in that form is read as IPv4 too, and
# one containing all of them (`::/0`) contains every IPv4 address.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def as_compared(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(network, ipaddress.IPv6Network):
        return (network,)
    if network.subnet_of(_IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return (ipaddress.IPv4Network((mapped, network.prefixlen - 96)),)
    if _IPV4_MAPPED.subnet_of(network):
        return (network, ipaddress.IPv4Network("0.0.0.0/0"))
    return (network,)


def parse_env(text: str) -> Literal["development", "production"]:
    value = text.strip().lower()
    if value == "development":
        return "development"
    if value == "production":
        return "production"
    raise ValueError("expected development or production")


def parse_provider(text: str) -> Literal["portone", "sandbox"]:
    value = text.strip().lower()
    if value == "portone":
        return "portone"
    if value == "sandbox":
        return "sandbox"
    raise ValueError("expected portone or sandbox")


# An upper bound on IDSERVICE_PROCESSES: each process has its own database pool and threads.
MAX_PROCESSES = 256


def parse_processes(text: str) -> int | Literal["auto"]:
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    try:
        count = int(value)
    except ValueError:
        raise ValueError("expected a whole number of processes or auto") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise ValueError(f"must be between 1 and {MAX_PROCESSES}, or auto")
    return count


def parse_log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value
