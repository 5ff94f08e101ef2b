"""Servicers: proto request → use-case call → proto response, and nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

import grpc

from idservice.domain.age import AgePolicy, age_band, seoul_today
from idservice.domain.errors import DomainError, Reason, invalid
from idservice.domain.model import Account, AccountStatus
from idservice.entrypoints.grpc.errors import unimplemented_status
from idservice.entrypoints.grpc.handling import bearer_token, rpc, time_remaining, timestamp
from idservice.service_layer import accounts, sessions, verification
from idservice.service_layer.services import Services
from idservice.service_layer.sessions import Caller, IssuedSession
from idservice.v1 import (
    account_pb2,
    account_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    guardian_consent_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)

_STATUS = {
    AccountStatus.ACTIVE: common_pb2.ACCOUNT_STATUS_ACTIVE,
    AccountStatus.PENDING_GUARDIAN_CONSENT: common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT,
}
_POLICY = {
    identity_pb2.AGE_POLICY_KR_CHILD_CONSENT: AgePolicy.KR_CHILD_CONSENT,
    identity_pb2.AGE_POLICY_KR_ADULT: AgePolicy.KR_ADULT,
    identity_pb2.AGE_POLICY_KR_YOUTH_PROTECTION: AgePolicy.KR_YOUTH_PROTECTION,
    identity_pb2.AGE_POLICY_MINIMUM_AGE: AgePolicy.MINIMUM_AGE,
}
_PROVIDER = {
    identity_pb2.VERIFICATION_PROVIDER_UNSPECIFIED: None,
    identity_pb2.VERIFICATION_PROVIDER_PORTONE: "portone",
    identity_pb2.VERIFICATION_PROVIDER_SANDBOX: "sandbox",
}


def account_message(account: Account, now: datetime) -> common_pb2.Account:
    c = account.consents
    return common_pb2.Account(
        id=account.id,
        status=_STATUS[account.status],
        email=account.email or "",
        name=account.name,
        phone_number=account.phone_number,
        birth_date=account.birth_date.isoformat(),
        age_band=age_band(account.birth_date, seoul_today(now)).value,
        sign_in_methods=account.sign_in_methods,
        identity_verified=account.identity_verified,
        created_at=timestamp(account.created_at),
        consents=common_pb2.Consents(
            terms_version=c.terms_version,
            privacy_policy_version=c.privacy_policy_version,
            marketing_opt_in=c.marketing_opt_in,
            accepted_at=timestamp(c.accepted_at),
            marketing_updated_at=timestamp(c.marketing_updated_at),
            processing_suspended=c.processing_suspended,
        ),
    )


def session_message(issued: IssuedSession) -> common_pb2.Session:
    return common_pb2.Session(
        account_id=issued.account_id,
        access_token=issued.access_token,
        access_token_expires_at=timestamp(issued.access_token_expires_at),
        refresh_token=issued.refresh_token,
        refresh_token_expires_at=timestamp(issued.refresh_token_expires_at),
    )


def unimplemented(context: grpc.ServicerContext) -> NoReturn:
    """An RPC of the contract whose capability has not landed yet."""
    context.abort_with_status(unimplemented_status())
    raise AssertionError("abort returned")  # pragma: no cover


class _Base:
    def __init__(self, services: Services) -> None:
        self.svc = services

    def caller(self, context: grpc.ServicerContext) -> Caller:
        return sessions.authenticate(self.svc, bearer_token(context))


class IdentityServicer(_Base, identity_pb2_grpc.IdentityServiceServicer):
    """IdentityService."""

    @rpc
    def CompleteVerification(
        self, request: identity_pb2.CompleteVerificationRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CompleteVerificationResponse:
        if request.provider not in _PROVIDER:
            raise DomainError(
                Reason.PROVIDER_NOT_CONFIGURED,
                "that identity verification provider is not configured",
            )
        done = verification.complete_verification(
            self.svc,
            provider=_PROVIDER[request.provider],
            verification_id=request.verification_id,
            timeout=time_remaining(context),
        )
        return identity_pb2.CompleteVerificationResponse(
            verification_token=done.token,
            name=done.person.name,
            birth_date=done.person.birth_date.isoformat(),
            age=done.age,
            is_under_14=done.is_under_14,
            duplicate=identity_pb2.DuplicateInfo(
                exists=done.duplicate.exists,
                sign_in_methods=list(done.duplicate.sign_in_methods),
                masked_email=done.duplicate.masked_email,
            ),
            verification_token_expires_at=timestamp(done.expires_at),
        )

    @rpc
    def CheckAge(
        self, request: identity_pb2.CheckAgeRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CheckAgeResponse:
        policy = _POLICY.get(request.policy)
        if policy is None:
            raise invalid("policy", "choose an age policy")
        subject = request.WhichOneof("subject")
        if subject is None:
            raise invalid("subject", "give the account, a verification_token or a birth_date")
        answer = verification.check_age(
            self.svc,
            policy=policy,
            minimum_age=request.minimum_age if policy is AgePolicy.MINIMUM_AGE else None,
            as_of=request.as_of,
            caller=self.caller(context) if subject == "account" else None,
            verification_token=(
                request.verification_token if subject == "verification_token" else None
            ),
            birth_date=request.birth_date,
        )
        return identity_pb2.CheckAgeResponse(
            age=answer.age,
            allowed=answer.allowed,
            assurance=identity_pb2.AGE_ASSURANCE_IDENTITY_VERIFIED
            if answer.identity_verified
            else identity_pb2.AGE_ASSURANCE_SELF_DECLARED,
            changes_on=answer.changes_on.isoformat() if answer.changes_on else "",
        )


class AccountServicer(_Base, account_pb2_grpc.AccountServiceServicer):
    """AccountService (SignUp, GetAccount, UpdateProfile, ChangePassword)."""

    @rpc
    def SignUp(
        self, request: account_pb2.SignUpRequest, context: grpc.ServicerContext
    ) -> account_pb2.SignUpResponse:
        result = accounts.sign_up(
            self.svc,
            accounts.SignUpCommand(
                idempotency_key=request.idempotency_key,
                email=request.email,
                password=request.password,
                sns_signup_ticket=request.sns_signup_ticket,
                name=request.name,
                phone_number=request.phone_number,
                birth_date=request.birth_date,
                verification_token=request.verification_token,
                consents_given=request.HasField("consents"),
                terms_version=request.consents.terms_version,
                privacy_policy_version=request.consents.privacy_policy_version,
                marketing_opt_in=request.consents.marketing_opt_in,
                guardian_given=request.HasField("guardian"),
                guardian_name=request.guardian.name,
                guardian_phone_number=request.guardian.phone_number,
            ),
        )
        response = account_pb2.SignUpResponse(
            account=account_message(result.account, self.svc.clock())
        )
        if result.session is not None:
            response.session.CopyFrom(session_message(result.session))
        if result.consent_request is not None:
            response.guardian_consent_request.CopyFrom(
                account_pb2.GuardianConsentRequestRef(
                    id=result.consent_request.id,
                    expires_at=timestamp(result.consent_request.expires_at),
                )
            )
        return response

    @rpc
    def GetAccount(
        self, request: account_pb2.GetAccountRequest, context: grpc.ServicerContext
    ) -> account_pb2.GetAccountResponse:
        account = sessions.current_account(self.svc, bearer_token(context))
        return account_pb2.GetAccountResponse(account=account_message(account, self.svc.clock()))

    @rpc
    def UpdateProfile(
        self, request: account_pb2.UpdateProfileRequest, context: grpc.ServicerContext
    ) -> account_pb2.UpdateProfileResponse:
        account = accounts.update_profile(
            self.svc,
            self.caller(context),
            name=request.name if request.HasField("name") else None,
            phone_number=request.phone_number if request.HasField("phone_number") else None,
            birth_date=request.birth_date if request.HasField("birth_date") else None,
            verification_token=request.verification_token,
        )
        return account_pb2.UpdateProfileResponse(account=account_message(account, self.svc.clock()))

    @rpc
    def ChangePassword(
        self, request: account_pb2.ChangePasswordRequest, context: grpc.ServicerContext
    ) -> account_pb2.ChangePasswordResponse:
        accounts.change_password(
            self.svc,
            self.caller(context),
            current_password=request.current_password,
            new_password=request.new_password,
        )
        return account_pb2.ChangePasswordResponse()

    def UpdateConsents(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def ExportPersonalData(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def Withdraw(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)


class AuthServicer(_Base, auth_pb2_grpc.AuthServiceServicer):
    """AuthService (password login and sessions)."""

    @rpc
    def PasswordLogin(
        self, request: auth_pb2.PasswordLoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.PasswordLoginResponse:
        issued = sessions.password_login(self.svc, email=request.email, password=request.password)
        return auth_pb2.PasswordLoginResponse(session=session_message(issued))

    @rpc
    def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RefreshSessionResponse:
        issued = sessions.refresh_session(self.svc, refresh_token=request.refresh_token)
        return auth_pb2.RefreshSessionResponse(session=session_message(issued))

    @rpc
    def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        sessions.logout(self.svc, refresh_token=request.refresh_token)
        return auth_pb2.LogoutResponse()

    @rpc
    def IntrospectToken(
        self, request: auth_pb2.IntrospectTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.IntrospectTokenResponse:
        result = sessions.introspect(self.svc, access_token=request.access_token)
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
        return auth_pb2.GetJwksResponse(jwks_json=self.svc.tokens.jwks_json())

    def SnsLogin(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def LinkSnsIdentity(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def UnlinkSnsIdentity(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)


class GuardianConsentServicer(_Base, guardian_consent_pb2_grpc.GuardianConsentServiceServicer):
    """GuardianConsentService: every RPC answers UNIMPLEMENTED until its capability lands."""

    def GetConsentRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def ApproveConsentRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def RejectConsentRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def ResendConsentNotification(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def ListWards(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def GetWard(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def UpdateWard(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def ExportWardData(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)

    def WithdrawWard(self, request: Any, context: grpc.ServicerContext) -> Any:
        unimplemented(context)
