"""GuardianConsentService: the consent journey of a child under 14, and the ward's rights."""

from __future__ import annotations

import grpc

from idservice.domain.guardian_consent import ConsentRequestStatus
from idservice.entrypoints.grpc.addresses import client_address
from idservice.entrypoints.grpc.caller import caller_service
from idservice.entrypoints.grpc.converters import account_message, timestamp
from idservice.entrypoints.grpc.handling import rpc
from idservice.entrypoints.grpc.servicers.base import Servicer
from idservice.service_layer.guardian_consent import (
    ApproveConsentRequest,
    GetConsentRequest,
    RejectConsentRequest,
    ResendConsentNotification,
)
from idservice.service_layer.wards import (
    ExportWardData,
    GetWard,
    ListWards,
    UpdateWard,
    WithdrawWard,
)
from idservice.v1 import guardian_consent_pb2 as pb
from idservice.v1 import guardian_consent_pb2_grpc

STATUS = {
    ConsentRequestStatus.PENDING: pb.CONSENT_REQUEST_STATUS_PENDING,
    ConsentRequestStatus.APPROVED: pb.CONSENT_REQUEST_STATUS_APPROVED,
    ConsentRequestStatus.REJECTED: pb.CONSENT_REQUEST_STATUS_REJECTED,
    ConsentRequestStatus.EXPIRED: pb.CONSENT_REQUEST_STATUS_EXPIRED,
}


class GuardianConsentServicer(Servicer, guardian_consent_pb2_grpc.GuardianConsentServiceServicer):
    def _audited(self, context: grpc.ServicerContext) -> dict[str, str]:
        """The calling service and the client's address, for the access audit."""
        settings = self.app.settings
        return {
            "actor": caller_service(context, mutual_tls=settings.tls_client_ca_file is not None),
            "client": client_address(context, settings.trusted_proxies),
        }

    @rpc
    def GetConsentRequest(
        self, request: pb.GetConsentRequestRequest, context: grpc.ServicerContext
    ) -> pb.GetConsentRequestResponse:
        view = self.handle(GetConsentRequest(id=request.id))
        return pb.GetConsentRequestResponse(
            id=view.id,
            status=STATUS[view.status],
            expires_at=timestamp(view.expires_at),
            masked_child_name=view.masked_child_name,
        )

    @rpc
    def ApproveConsentRequest(
        self, request: pb.ApproveConsentRequestRequest, context: grpc.ServicerContext
    ) -> pb.ApproveConsentRequestResponse:
        ward = self.handle(
            ApproveConsentRequest(
                id=request.id,
                consent_code=request.consent_code,
                guardian_verification_token=request.guardian_verification_token,
                client_address=self.end_user(context),
            )
        )
        return pb.ApproveConsentRequestResponse(
            status=pb.CONSENT_REQUEST_STATUS_APPROVED, ward_account_id=ward
        )

    @rpc
    def RejectConsentRequest(
        self, request: pb.RejectConsentRequestRequest, context: grpc.ServicerContext
    ) -> pb.RejectConsentRequestResponse:
        status = self.handle(
            RejectConsentRequest(
                id=request.id,
                consent_code=request.consent_code,
                client_address=self.end_user(context),
            )
        )
        return pb.RejectConsentRequestResponse(status=STATUS[status])

    @rpc
    def ResendConsentNotification(
        self, request: pb.ResendConsentNotificationRequest, context: grpc.ServicerContext
    ) -> pb.ResendConsentNotificationResponse:
        expires_at = self.handle(
            ResendConsentNotification(id=request.id, client_address=self.end_user(context))
        )
        return pb.ResendConsentNotificationResponse(expires_at=timestamp(expires_at))

    @rpc
    def ListWards(
        self, request: pb.ListWardsRequest, context: grpc.ServicerContext
    ) -> pb.ListWardsResponse:
        wards = self.handle(
            ListWards(
                guardian_verification_token=request.guardian_verification_token,
                **self._audited(context),
            )
        )
        return pb.ListWardsResponse(wards=[account_message(w, self.now()) for w in wards])

    @rpc
    def GetWard(
        self, request: pb.GetWardRequest, context: grpc.ServicerContext
    ) -> pb.GetWardResponse:
        ward = self.handle(
            GetWard(
                guardian_verification_token=request.guardian_verification_token,
                ward_account_id=request.ward_account_id,
                **self._audited(context),
            )
        )
        return pb.GetWardResponse(account=account_message(ward, self.now()))

    @rpc
    def UpdateWard(
        self, request: pb.UpdateWardRequest, context: grpc.ServicerContext
    ) -> pb.UpdateWardResponse:
        ward = self.handle(
            UpdateWard(
                guardian_verification_token=request.guardian_verification_token,
                ward_account_id=request.ward_account_id,
                name=request.name if request.HasField("name") else None,
                phone_number=request.phone_number if request.HasField("phone_number") else None,
                **self._audited(context),
            )
        )
        return pb.UpdateWardResponse(account=account_message(ward, self.now()))

    @rpc
    def ExportWardData(
        self, request: pb.ExportWardDataRequest, context: grpc.ServicerContext
    ) -> pb.ExportWardDataResponse:
        document = self.handle(
            ExportWardData(
                guardian_verification_token=request.guardian_verification_token,
                ward_account_id=request.ward_account_id,
                **self._audited(context),
            )
        )
        return pb.ExportWardDataResponse(document_json=document)

    @rpc
    def WithdrawWard(
        self, request: pb.WithdrawWardRequest, context: grpc.ServicerContext
    ) -> pb.WithdrawWardResponse:
        self.handle(
            WithdrawWard(
                guardian_verification_token=request.guardian_verification_token,
                ward_account_id=request.ward_account_id,
                **self._audited(context),
            )
        )
        return pb.WithdrawWardResponse()
