"""AuthService: password login and sessions (SNS login and linking to come)."""

from __future__ import annotations

from typing import Any

import grpc

from idservice.entrypoints.grpc.converters import session_message, timestamp
from idservice.entrypoints.grpc.handling import rpc
from idservice.entrypoints.grpc.servicers.base import Servicer, unimplemented
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.sessions import GetJwks, IntrospectToken, Logout, RefreshSession
from idservice.v1 import auth_pb2, auth_pb2_grpc


class AuthServicer(Servicer, auth_pb2_grpc.AuthServiceServicer):
    @rpc
    def PasswordLogin(
        self, request: auth_pb2.PasswordLoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.PasswordLoginResponse:
        issued = self.handle(PasswordLogin(email=request.email, password=request.password))
        return auth_pb2.PasswordLoginResponse(session=session_message(issued))

    @rpc
    def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RefreshSessionResponse:
        issued = self.handle(RefreshSession(refresh_token=request.refresh_token))
        return auth_pb2.RefreshSessionResponse(session=session_message(issued))

    @rpc
    def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        self.handle(Logout(refresh_token=request.refresh_token))
        return auth_pb2.LogoutResponse()

    @rpc
    def IntrospectToken(
        self, request: auth_pb2.IntrospectTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.IntrospectTokenResponse:
        result = self.handle(IntrospectToken(access_token=request.access_token))
        return auth_pb2.IntrospectTokenResponse(
            active=result.active,
            account_id=result.account_id,
            session_id=result.session_id,
            expires_at=timestamp(result.expires_at),
            age_band=result.age_band,
        )

    @rpc
    def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(jwks_json=self.handle(GetJwks()))

    def SnsLogin(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def LinkSnsIdentity(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def UnlinkSnsIdentity(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)
