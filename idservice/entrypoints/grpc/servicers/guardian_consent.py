"""GuardianConsentService: every RPC answers UNIMPLEMENTED until its capability lands."""

from __future__ import annotations

from typing import Any

import grpc

from idservice.entrypoints.grpc.servicers.base import Servicer, unimplemented
from idservice.v1 import guardian_consent_pb2_grpc


class GuardianConsentServicer(Servicer, guardian_consent_pb2_grpc.GuardianConsentServiceServicer):
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
