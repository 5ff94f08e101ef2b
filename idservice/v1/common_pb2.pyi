import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_ACTIVE: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_WITHDRAWN: _ClassVar[AccountStatus]

class SnsProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNS_PROVIDER_UNSPECIFIED: _ClassVar[SnsProvider]
    SNS_PROVIDER_GOOGLE: _ClassVar[SnsProvider]
    SNS_PROVIDER_KAKAO: _ClassVar[SnsProvider]
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACCOUNT_STATUS_ACTIVE: AccountStatus
ACCOUNT_STATUS_PENDING_GUARDIAN_CONSENT: AccountStatus
ACCOUNT_STATUS_WITHDRAWN: AccountStatus
SNS_PROVIDER_UNSPECIFIED: SnsProvider
SNS_PROVIDER_GOOGLE: SnsProvider
SNS_PROVIDER_KAKAO: SnsProvider

class Account(_message.Message):
    __slots__ = ("id", "status", "email", "name", "phone_number", "birth_date", "age_band", "sign_in_methods", "identity_verified", "created_at", "consents")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    SIGN_IN_METHODS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: AccountStatus
    email: str
    name: str
    phone_number: str
    birth_date: str
    age_band: str
    sign_in_methods: _containers.RepeatedScalarFieldContainer[str]
    identity_verified: bool
    created_at: _timestamp_pb2.Timestamp
    consents: Consents
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., email: _Optional[str] = ..., name: _Optional[str] = ..., phone_number: _Optional[str] = ..., birth_date: _Optional[str] = ..., age_band: _Optional[str] = ..., sign_in_methods: _Optional[_Iterable[str]] = ..., identity_verified: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consents: _Optional[_Union[Consents, _Mapping]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("account_id", "access_token", "access_token_expires_at", "refresh_token", "refresh_token_expires_at")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    access_token: str
    access_token_expires_at: _timestamp_pb2.Timestamp
    refresh_token: str
    refresh_token_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., access_token: _Optional[str] = ..., access_token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., refresh_token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Consents(_message.Message):
    __slots__ = ("terms_version", "privacy_policy_version", "marketing_opt_in", "accepted_at", "marketing_updated_at", "processing_suspended", "third_party_provision_opt_in", "third_party_provision_updated_at")
    TERMS_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    MARKETING_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    MARKETING_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_PROVISION_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_PROVISION_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    terms_version: str
    privacy_policy_version: str
    marketing_opt_in: bool
    accepted_at: _timestamp_pb2.Timestamp
    marketing_updated_at: _timestamp_pb2.Timestamp
    processing_suspended: bool
    third_party_provision_opt_in: bool
    third_party_provision_updated_at: _timestamp_pb2.Timestamp
    def __init__(self, terms_version: _Optional[str] = ..., privacy_policy_version: _Optional[str] = ..., marketing_opt_in: _Optional[bool] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., marketing_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., processing_suspended: _Optional[bool] = ..., third_party_provision_opt_in: _Optional[bool] = ..., third_party_provision_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Guardian(_message.Message):
    __slots__ = ("name", "phone_number")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    phone_number: str
    def __init__(self, name: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class SnsCredential(_message.Message):
    __slots__ = ("provider", "id_token", "nonce", "authorization_code", "code_verifier", "redirect_uri", "kakao_access_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_VERIFIER_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    KAKAO_ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: SnsProvider
    id_token: str
    nonce: str
    authorization_code: str
    code_verifier: str
    redirect_uri: str
    kakao_access_token: str
    def __init__(self, provider: _Optional[_Union[SnsProvider, str]] = ..., id_token: _Optional[str] = ..., nonce: _Optional[str] = ..., authorization_code: _Optional[str] = ..., code_verifier: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., kakao_access_token: _Optional[str] = ...) -> None: ...
