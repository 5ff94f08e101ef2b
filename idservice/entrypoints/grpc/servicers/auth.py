"""AuthService: password and SNS login, SNS links, sessions and tokens."""

from __future__ import annotations

import grpc

from idservice.entrypoints.grpc.converters import (
    SNS_PROVIDER,
    session_message,
    sns_credential,
    timestamp,
)
from idservice.entrypoints.grpc.handling import bearer_token, rpc, time_remaining
from idservice.entrypoints.grpc.servicers.base import Servicer
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.sessions import GetJwks, IntrospectToken, Logout, RefreshSession
from idservice.service_layer.sns_login import LinkSnsIdentity, SnsLogin, UnlinkSnsIdentity
from idservice.v1 import auth_pb2, auth_pb2_grpc


class AuthServicer(Servicer, auth_pb2_grpc.AuthServiceServicer):
    @rpc
    def PasswordLogin(
        self, request: auth_pb2.PasswordLoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.PasswordLoginResponse:
        issued = self.handle(
            PasswordLogin(
                email=request.email,
                password=request.password,
                client_address=self.end_user(context),
            )
        )
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
            marketing_opt_in=result.marketing_opt_in,
            processing_suspended=result.processing_suspended,
            third_party_provision_opt_in=result.third_party_opt_in,
        )

    @rpc
    def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(jwks_json=self.handle(GetJwks()))

    @rpc
    def SnsLogin(
        self, request: auth_pb2.SnsLoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.SnsLoginResponse:
        result = self.handle(
            SnsLogin(
                provider=SNS_PROVIDER.get(request.provider),
                credential=sns_credential(request),
                timeout=time_remaining(context),
            )
        )
        if result.session is not None:
            return auth_pb2.SnsLoginResponse(session=session_message(result.session))
        required = result.signup_required
        assert required is not None
        return auth_pb2.SnsLoginResponse(
            signup_required=auth_pb2.SignupRequired(
                sns_signup_ticket=required.sns_signup_ticket,
                prefill=auth_pb2.SignupPrefill(
                    email=required.email,
                    name=required.name,
                    birth_date=required.birth_date.isoformat() if required.birth_date else "",
                ),
            )
        )

    @rpc
    def LinkSnsIdentity(
        self, request: auth_pb2.LinkSnsIdentityRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LinkSnsIdentityResponse:
        methods = self.handle(
            LinkSnsIdentity(
                access_token=bearer_token(context),
                provider=SNS_PROVIDER.get(request.provider),
                credential=sns_credential(request),
                timeout=time_remaining(context),
            )
        )
        return auth_pb2.LinkSnsIdentityResponse(sign_in_methods=methods)

    @rpc
    def UnlinkSnsIdentity(
        self, request: auth_pb2.UnlinkSnsIdentityRequest, context: grpc.ServicerContext
    ) -> auth_pb2.UnlinkSnsIdentityResponse:
        methods = self.handle(
            UnlinkSnsIdentity(
                access_token=bearer_token(context), provider=SNS_PROVIDER.get(request.provider)
            )
        )
        return auth_pb2.UnlinkSnsIdentityResponse(sign_in_methods=methods)
