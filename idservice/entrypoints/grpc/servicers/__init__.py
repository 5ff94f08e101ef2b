"""One servicer module per gRPC service; `register` adds them all to a server."""

from __future__ import annotations

import grpc

from idservice.bootstrap import App
from idservice.entrypoints.grpc.servicers.accounts import AccountServicer
from idservice.entrypoints.grpc.servicers.auth import AuthServicer
from idservice.entrypoints.grpc.servicers.guardian_consent import GuardianConsentServicer
from idservice.entrypoints.grpc.servicers.identity import IdentityServicer
from idservice.v1 import (
    account_pb2,
    account_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    guardian_consent_pb2,
    guardian_consent_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)

_SERVICES = (
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    account_pb2.DESCRIPTOR.services_by_name["AccountService"],
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    guardian_consent_pb2.DESCRIPTOR.services_by_name["GuardianConsentService"],
)
SERVICE_NAMES = tuple(service.full_name for service in _SERVICES)
# Every RPC's name, as the metrics label it.
METHOD_NAMES = tuple(method.name for service in _SERVICES for method in service.methods)


def register(app: App, server: grpc.Server) -> None:
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(app), server)
    account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(app), server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(app), server)
    guardian_consent_pb2_grpc.add_GuardianConsentServiceServicer_to_server(
        GuardianConsentServicer(app), server
    )


__all__ = [
    "METHOD_NAMES",
    "SERVICE_NAMES",
    "AccountServicer",
    "AuthServicer",
    "GuardianConsentServicer",
    "IdentityServicer",
    "register",
]
