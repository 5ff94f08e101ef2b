"""AccountService: SignUp, the caller's own account, and the person's rights over it."""

from __future__ import annotations

import grpc

from idservice.entrypoints.grpc.converters import (
    SNS_PROVIDER,
    account_message,
    consents_message,
    session_message,
    sns_credential,
    timestamp,
)
from idservice.entrypoints.grpc.handling import bearer_token, rpc, time_remaining
from idservice.entrypoints.grpc.servicers.base import Servicer
from idservice.service_layer.privacy import ExportPersonalData, UpdateConsents, Withdraw
from idservice.service_layer.profile import ChangePassword, GetAccount, UpdateProfile
from idservice.service_layer.signup import SignUp
from idservice.v1 import account_pb2, account_pb2_grpc


class AccountServicer(Servicer, account_pb2_grpc.AccountServiceServicer):
    @rpc
    def SignUp(
        self, request: account_pb2.SignUpRequest, context: grpc.ServicerContext
    ) -> account_pb2.SignUpResponse:
        result = self.handle(
            SignUp(
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
                third_party_opt_in=request.consents.third_party_provision_opt_in,
                guardian_given=request.HasField("guardian"),
                guardian_name=request.guardian.name,
                guardian_phone_number=request.guardian.phone_number,
            )
        )
        response = account_pb2.SignUpResponse(account=account_message(result.account, self.now()))
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
        account = self.handle(GetAccount(access_token=bearer_token(context)))
        return account_pb2.GetAccountResponse(account=account_message(account, self.now()))

    @rpc
    def UpdateProfile(
        self, request: account_pb2.UpdateProfileRequest, context: grpc.ServicerContext
    ) -> account_pb2.UpdateProfileResponse:
        account = self.handle(
            UpdateProfile(
                access_token=bearer_token(context),
                name=request.name if request.HasField("name") else None,
                phone_number=request.phone_number if request.HasField("phone_number") else None,
                birth_date=request.birth_date if request.HasField("birth_date") else None,
                verification_token=request.verification_token,
            )
        )
        return account_pb2.UpdateProfileResponse(account=account_message(account, self.now()))

    @rpc
    def ChangePassword(
        self, request: account_pb2.ChangePasswordRequest, context: grpc.ServicerContext
    ) -> account_pb2.ChangePasswordResponse:
        self.handle(
            ChangePassword(
                access_token=bearer_token(context),
                current_password=request.current_password,
                new_password=request.new_password,
            )
        )
        return account_pb2.ChangePasswordResponse()

    @rpc
    def UpdateConsents(
        self, request: account_pb2.UpdateConsentsRequest, context: grpc.ServicerContext
    ) -> account_pb2.UpdateConsentsResponse:
        consents = self.handle(
            UpdateConsents(
                access_token=bearer_token(context),
                marketing_opt_in=request.marketing_opt_in
                if request.HasField("marketing_opt_in")
                else None,
                processing_suspended=request.processing_suspended
                if request.HasField("processing_suspended")
                else None,
                third_party_opt_in=request.third_party_provision_opt_in
                if request.HasField("third_party_provision_opt_in")
                else None,
            )
        )
        return account_pb2.UpdateConsentsResponse(consents=consents_message(consents))

    @rpc
    def ExportPersonalData(
        self, request: account_pb2.ExportPersonalDataRequest, context: grpc.ServicerContext
    ) -> account_pb2.ExportPersonalDataResponse:
        document = self.handle(ExportPersonalData(access_token=bearer_token(context)))
        return account_pb2.ExportPersonalDataResponse(document_json=document)

    @rpc
    def Withdraw(
        self, request: account_pb2.WithdrawRequest, context: grpc.ServicerContext
    ) -> account_pb2.WithdrawResponse:
        given = request.HasField("sns_credential")
        self.handle(
            Withdraw(
                access_token=bearer_token(context),
                password=request.password,
                sns_provider=SNS_PROVIDER.get(request.sns_credential.provider) if given else None,
                sns_credential=sns_credential(request.sns_credential) if given else None,
                timeout=time_remaining(context),
            )
        )
        return account_pb2.WithdrawResponse()
