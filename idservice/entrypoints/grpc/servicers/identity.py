"""IdentityService: CompleteVerification and CheckAge."""

from __future__ import annotations

import grpc

from idservice.domain.age import AgePolicy
from idservice.domain.errors import DomainError, Reason, invalid
from idservice.entrypoints.grpc.converters import AGE_POLICY, VERIFICATION_PROVIDER, timestamp
from idservice.entrypoints.grpc.handling import bearer_token, rpc, time_remaining
from idservice.entrypoints.grpc.servicers.base import Servicer
from idservice.service_layer.age_check import CheckAge
from idservice.service_layer.verification import CompleteVerification
from idservice.v1 import identity_pb2, identity_pb2_grpc


class IdentityServicer(Servicer, identity_pb2_grpc.IdentityServiceServicer):
    @rpc
    def CompleteVerification(
        self, request: identity_pb2.CompleteVerificationRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CompleteVerificationResponse:
        if request.provider not in VERIFICATION_PROVIDER:
            raise DomainError(
                Reason.PROVIDER_NOT_CONFIGURED,
                "that identity verification provider is not configured",
            )
        done = self.handle(
            CompleteVerification(
                provider=VERIFICATION_PROVIDER[request.provider],
                verification_id=request.verification_id,
                timeout=time_remaining(context),
                client_address=self.end_user(context),
            )
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
        policy = AGE_POLICY.get(request.policy)
        if policy is None:
            raise invalid("policy", "choose an age policy")
        subject = request.WhichOneof("subject")
        if subject is None:
            raise invalid("subject", "give the account, a verification_token or a birth_date")
        answer = self.handle(
            CheckAge(
                policy=policy,
                minimum_age=request.minimum_age if policy is AgePolicy.MINIMUM_AGE else None,
                as_of=request.as_of,
                access_token=bearer_token(context) if subject == "account" else None,
                verification_token=(
                    request.verification_token if subject == "verification_token" else None
                ),
                birth_date=request.birth_date,
            )
        )
        return identity_pb2.CheckAgeResponse(
            age=answer.age,
            allowed=answer.allowed,
            assurance=identity_pb2.AGE_ASSURANCE_IDENTITY_VERIFIED
            if answer.identity_verified
            else identity_pb2.AGE_ASSURANCE_SELF_DECLARED,
            changes_on=answer.changes_on.isoformat() if answer.changes_on else "",
        )
