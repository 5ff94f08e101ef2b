import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idservice.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignUpRequest(_message.Message):
    __slots__ = ("idempotency_key", "email", "password", "sns_signup_ticket", "name", "phone_number", "birth_date", "verification_token", "consents", "guardian")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SNS_SIGNUP_TICKET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    email: str
    password: str
    sns_signup_ticket: str
    name: str
    phone_number: str
    birth_date: str
    verification_token: str
    consents: _common_pb2.Consents
    guardian: _common_pb2.Guardian
    def __init__(self, idempotency_key: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., sns_signup_ticket: _Optional[str] = ..., name: _Optional[str] = ..., phone_number: _Optional[str] = ..., birth_date: _Optional[str] = ..., verification_token: _Optional[str] = ..., consents: _Optional[_Union[_common_pb2.Consents, _Mapping]] = ..., guardian: _Optional[_Union[_common_pb2.Guardian, _Mapping]] = ...) -> None: ...

class GuardianConsentRequestRef(_message.Message):
    __slots__ = ("id", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SignUpResponse(_message.Message):
    __slots__ = ("account", "session", "guardian_consent_request")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GUARDIAN_CONSENT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    account: _common_pb2.Account
    session: _common_pb2.Session
    guardian_consent_request: GuardianConsentRequestRef
    def __init__(self, account: _Optional[_Union[_common_pb2.Account, _Mapping]] = ..., session: _Optional[_Union[_common_pb2.Session, _Mapping]] = ..., guardian_consent_request: _Optional[_Union[GuardianConsentRequestRef, _Mapping]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _common_pb2.Account
    def __init__(self, account: _Optional[_Union[_common_pb2.Account, _Mapping]] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("name", "phone_number", "birth_date", "verification_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    phone_number: str
    birth_date: str
    verification_token: str
    def __init__(self, name: _Optional[str] = ..., phone_number: _Optional[str] = ..., birth_date: _Optional[str] = ..., verification_token: _Optional[str] = ...) -> None: ...

class UpdateProfileResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _common_pb2.Account
    def __init__(self, account: _Optional[_Union[_common_pb2.Account, _Mapping]] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("current_password", "new_password")
    CURRENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    current_password: str
    new_password: str
    def __init__(self, current_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class ChangePasswordResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateConsentsRequest(_message.Message):
    __slots__ = ("marketing_opt_in", "processing_suspended", "third_party_provision_opt_in")
    MARKETING_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_PROVISION_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    marketing_opt_in: bool
    processing_suspended: bool
    third_party_provision_opt_in: bool
    def __init__(self, marketing_opt_in: _Optional[bool] = ..., processing_suspended: _Optional[bool] = ..., third_party_provision_opt_in: _Optional[bool] = ...) -> None: ...

class UpdateConsentsResponse(_message.Message):
    __slots__ = ("consents",)
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    consents: _common_pb2.Consents
    def __init__(self, consents: _Optional[_Union[_common_pb2.Consents, _Mapping]] = ...) -> None: ...

class ExportPersonalDataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportPersonalDataResponse(_message.Message):
    __slots__ = ("document_json",)
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    document_json: str
    def __init__(self, document_json: _Optional[str] = ...) -> None: ...

class WithdrawRequest(_message.Message):
    __slots__ = ("password", "sns_credential")
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SNS_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    password: str
    sns_credential: _common_pb2.SnsCredential
    def __init__(self, password: _Optional[str] = ..., sns_credential: _Optional[_Union[_common_pb2.SnsCredential, _Mapping]] = ...) -> None: ...

class WithdrawResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
