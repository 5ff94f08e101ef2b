"""Proto ⇄ domain: the one place that turns records into messages and enums into values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from google.protobuf import timestamp_pb2

from idservice.domain.accounts import Account, AccountProfile, AccountStatus, Consents
from idservice.domain.age import AgePolicy, age_band, seoul_today
from idservice.domain.sns import SnsProvider
from idservice.service_layer.ports import SnsCredential
from idservice.service_layer.sessions import IssuedSession
from idservice.v1 import common_pb2, identity_pb2

ACCOUNT_STATUS = {
    AccountStatus.ACTIVE: common_pb2.ACCOUNT_STATUS_ACTIVE,
    AccountStatus.PENDING_GUARDIAN_CONSENT: common_pb2.ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT,
}
AGE_POLICY = {
    identity_pb2.AGE_POLICY_KR_CHILD_CONSENT: AgePolicy.KR_CHILD_CONSENT,
    identity_pb2.AGE_POLICY_KR_ADULT: AgePolicy.KR_ADULT,
    identity_pb2.AGE_POLICY_KR_YOUTH_PROTECTION: AgePolicy.KR_YOUTH_PROTECTION,
    identity_pb2.AGE_POLICY_MINIMUM_AGE: AgePolicy.MINIMUM_AGE,
}
# None: the configured provider.
VERIFICATION_PROVIDER = {
    identity_pb2.VERIFICATION_PROVIDER_UNSPECIFIED: None,
    identity_pb2.VERIFICATION_PROVIDER_PORTONE: "portone",
    identity_pb2.VERIFICATION_PROVIDER_SANDBOX: "sandbox",
}


SNS_PROVIDER = {
    common_pb2.SNS_PROVIDER_GOOGLE: SnsProvider.GOOGLE,
    common_pb2.SNS_PROVIDER_KAKAO: SnsProvider.KAKAO,
}


class SnsCredentialRequest(Protocol):
    """The credential fields SnsLoginRequest and LinkSnsIdentityRequest share."""

    id_token: str
    nonce: str
    authorization_code: str
    code_verifier: str
    redirect_uri: str
    kakao_access_token: str


def sns_credential(request: SnsCredentialRequest) -> SnsCredential:
    return SnsCredential(
        id_token=request.id_token,
        nonce=request.nonce,
        authorization_code=request.authorization_code,
        code_verifier=request.code_verifier,
        redirect_uri=request.redirect_uri,
        kakao_access_token=request.kakao_access_token,
    )


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def account_message(account: Account | AccountProfile, now: datetime) -> common_pb2.Account:
    c = account.consents
    return common_pb2.Account(
        id=account.id,
        status=ACCOUNT_STATUS[account.status],
        email=account.email or "",
        name=account.name,
        phone_number=account.phone_number,
        birth_date=account.birth_date.isoformat(),
        age_band=age_band(account.birth_date, seoul_today(now)).value,
        sign_in_methods=account.sign_in_methods,
        identity_verified=account.identity_verified,
        created_at=timestamp(account.created_at),
        consents=consents_message(c),
    )


def consents_message(c: Consents) -> common_pb2.Consents:
    return common_pb2.Consents(
        terms_version=c.terms_version,
        privacy_policy_version=c.privacy_policy_version,
        marketing_opt_in=c.marketing_opt_in,
        accepted_at=timestamp(c.accepted_at),
        marketing_updated_at=timestamp(c.marketing_updated_at),
        processing_suspended=c.processing_suspended,
        third_party_provision_opt_in=c.third_party_opt_in,
        third_party_provision_updated_at=timestamp(c.third_party_updated_at),
    )


def session_message(issued: IssuedSession) -> common_pb2.Session:
    return common_pb2.Session(
        account_id=issued.account_id,
        access_token=issued.access_token,
        access_token_expires_at=timestamp(issued.access_token_expires_at),
        refresh_token=issued.refresh_token,
        refresh_token_expires_at=timestamp(issued.refresh_token_expires_at),
    )
