"""Who is calling and from where, as the access audit records it.

The calling service is the subject of its client certificate when mutual TLS is on (the
transport authenticated it): `cert:<subject>`. Without mutual TLS a caller may name itself in
`x-caller-service` metadata, recorded as `claimed:<name>` when it is a plain service name (with
a letter, and nothing in it shaped like a resident registration number or a Korean mobile
number: the audit keeps it for years and cannot forget it); otherwise it is `unknown`. The
client's address is the end user's as a trusted proxy names it, else the connection's peer.
"""

from __future__ import annotations

import re

import grpc

from idservice.domain.audit import MAX_ACTOR_LENGTH
from idservice.domain.rrn import looks_like_rrn
from idservice.entrypoints.grpc.calls import holds_mobile_number
from idservice.service_layer.audit import UNKNOWN_ACTOR

CALLER_METADATA = "x-caller-service"
# A service name a caller may claim: a letter, no spaces, quotes or control characters.
_SERVICE_NAME = re.compile(r"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9._:/@-]{0,63}")
_NAME_SEPARATORS = re.compile(r"[/@]")
# grpc's auth context names the peer certificate's subject (RFC 2253) and common name so.
_SUBJECT_PROPERTIES = ("x509_subject", "x509_common_name")


def _certificate_subject(context: grpc.ServicerContext) -> str:
    properties = context.auth_context() or {}
    for name in _SUBJECT_PROPERTIES:
        for value in properties.get(name, ()):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            printable = "".join(ch for ch in text if ch.isprintable()).strip()
            if printable:
                return printable
    return ""


def _claimed_name(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == CALLER_METADATA and isinstance(value, str):
            plain = _SERVICE_NAME.fullmatch(value)
            # `/` and `@` join digit groups here as `-` does (request ids have neither).
            grouped = _NAME_SEPARATORS.sub("-", value)
            personal = plain and (looks_like_rrn(value) or holds_mobile_number(grouped))
            return value if plain and not personal else ""
    return ""


def caller_service(context: grpc.ServicerContext, *, mutual_tls: bool) -> str:
    """`cert:<subject>`, `claimed:<name>` or `unknown` (at most MAX_ACTOR_LENGTH characters)."""
    if mutual_tls:
        subject = _certificate_subject(context)
        if subject:
            return f"cert:{subject}"[:MAX_ACTOR_LENGTH]
    claimed = _claimed_name(context)
    return f"claimed:{claimed}" if claimed else UNKNOWN_ACTOR
