import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idservice.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentRequestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_REQUEST_STATUS_UNSPECIFIED: _ClassVar[ConsentRequestStatus]
    CONSENT_REQUEST_STATUS_PENDING: _ClassVar[ConsentRequestStatus]
    CONSENT_REQUEST_STATUS_APPROVED: _ClassVar[ConsentRequestStatus]
    CONSENT_REQUEST_STATUS_REJECTED: _ClassVar[ConsentRequestStatus]
    CONSENT_REQUEST_STATUS_EXPIRED: _ClassVar[ConsentRequestStatus]
CONSENT_REQUEST_STATUS_UNSPECIFIED: ConsentRequestStatus
CONSENT_REQUEST_STATUS_PENDING: ConsentRequestStatus
CONSENT_REQUEST_STATUS_APPROVED: ConsentRequestStatus
CONSENT_REQUEST_STATUS_REJECTED: ConsentRequestStatus
CONSENT_REQUEST_STATUS_EXPIRED: ConsentRequestStatus

class GetConsentRequestRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetConsentRequestResponse(_message.Message):
    __slots__ = ("id", "status", "expires_at", "masked_child_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MASKED_CHILD_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: ConsentRequestStatus
    expires_at: _timestamp_pb2.Timestamp
    masked_child_name: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[ConsentRequestStatus, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., masked_child_name: _Optional[str] = ...) -> None: ...

class ApproveConsentRequestRequest(_message.Message):
    __slots__ = ("id", "consent_code", "guardian_verification_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_CODE_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    consent_code: str
    guardian_verification_token: str
    def __init__(self, id: _Optional[str] = ..., consent_code: _Optional[str] = ..., guardian_verification_token: _Optional[str] = ...) -> None: ...

class ApproveConsentRequestResponse(_message.Message):
    __slots__ = ("status", "ward_account_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WARD_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    status: ConsentRequestStatus
    ward_account_id: str
    def __init__(self, status: _Optional[_Union[ConsentRequestStatus, str]] = ..., ward_account_id: _Optional[str] = ...) -> None: ...

class RejectConsentRequestRequest(_message.Message):
    __slots__ = ("id", "consent_code")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_CODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    consent_code: str
    def __init__(self, id: _Optional[str] = ..., consent_code: _Optional[str] = ...) -> None: ...

class RejectConsentRequestResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: ConsentRequestStatus
    def __init__(self, status: _Optional[_Union[ConsentRequestStatus, str]] = ...) -> None: ...

class ResendConsentNotificationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ResendConsentNotificationResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWardsRequest(_message.Message):
    __slots__ = ("guardian_verification_token",)
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    guardian_verification_token: str
    def __init__(self, guardian_verification_token: _Optional[str] = ...) -> None: ...

class ListWardsResponse(_message.Message):
    __slots__ = ("wards",)
    WARDS_FIELD_NUMBER: _ClassVar[int]
    wards: _containers.RepeatedCompositeFieldContainer[_common_pb2.Account]
    def __init__(self, wards: _Optional[_Iterable[_Union[_common_pb2.Account, _Mapping]]] = ...) -> None: ...

class GetWardRequest(_message.Message):
    __slots__ = ("guardian_verification_token", "ward_account_id")
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WARD_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    guardian_verification_token: str
    ward_account_id: str
    def __init__(self, guardian_verification_token: _Optional[str] = ..., ward_account_id: _Optional[str] = ...) -> None: ...

class GetWardResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _common_pb2.Account
    def __init__(self, account: _Optional[_Union[_common_pb2.Account, _Mapping]] = ...) -> None: ...

class UpdateWardRequest(_message.Message):
    __slots__ = ("guardian_verification_token", "ward_account_id", "name", "phone_number")
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WARD_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    guardian_verification_token: str
    ward_account_id: str
    name: str
    phone_number: str
    def __init__(self, guardian_verification_token: _Optional[str] = ..., ward_account_id: _Optional[str] = ..., name: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class UpdateWardResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _common_pb2.Account
    def __init__(self, account: _Optional[_Union[_common_pb2.Account, _Mapping]] = ...) -> None: ...

class ExportWardDataRequest(_message.Message):
    __slots__ = ("guardian_verification_token", "ward_account_id")
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WARD_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    guardian_verification_token: str
    ward_account_id: str
    def __init__(self, guardian_verification_token: _Optional[str] = ..., ward_account_id: _Optional[str] = ...) -> None: ...

class ExportWardDataResponse(_message.Message):
    __slots__ = ("document_json",)
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    document_json: str
    def __init__(self, document_json: _Optional[str] = ...) -> None: ...

class WithdrawWardRequest(_message.Message):
    __slots__ = ("guardian_verification_token", "ward_account_id")
    GUARDIAN_VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WARD_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    guardian_verification_token: str
    ward_account_id: str
    def __init__(self, guardian_verification_token: _Optional[str] = ..., ward_account_id: _Optional[str] = ...) -> None: ...

class WithdrawWardResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
