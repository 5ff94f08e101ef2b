import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerificationProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFICATION_PROVIDER_UNSPECIFIED: _ClassVar[VerificationProvider]
    VERIFICATION_PROVIDER_PORTONE: _ClassVar[VerificationProvider]
    VERIFICATION_PROVIDER_SANDBOX: _ClassVar[VerificationProvider]

class AgePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGE_POLICY_UNSPECIFIED: _ClassVar[AgePolicy]
    AGE_POLICY_KR_CHILD_CONSENT: _ClassVar[AgePolicy]
    AGE_POLICY_KR_ADULT: _ClassVar[AgePolicy]
    AGE_POLICY_KR_YOUTH_PROTECTION: _ClassVar[AgePolicy]
    AGE_POLICY_MINIMUM_AGE: _ClassVar[AgePolicy]

class AgeAssurance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGE_ASSURANCE_UNSPECIFIED: _ClassVar[AgeAssurance]
    AGE_ASSURANCE_SELF_DECLARED: _ClassVar[AgeAssurance]
    AGE_ASSURANCE_IDENTITY_VERIFIED: _ClassVar[AgeAssurance]
VERIFICATION_PROVIDER_UNSPECIFIED: VerificationProvider
VERIFICATION_PROVIDER_PORTONE: VerificationProvider
VERIFICATION_PROVIDER_SANDBOX: VerificationProvider
AGE_POLICY_UNSPECIFIED: AgePolicy
AGE_POLICY_KR_CHILD_CONSENT: AgePolicy
AGE_POLICY_KR_ADULT: AgePolicy
AGE_POLICY_KR_YOUTH_PROTECTION: AgePolicy
AGE_POLICY_MINIMUM_AGE: AgePolicy
AGE_ASSURANCE_UNSPECIFIED: AgeAssurance
AGE_ASSURANCE_SELF_DECLARED: AgeAssurance
AGE_ASSURANCE_IDENTITY_VERIFIED: AgeAssurance

class CompleteVerificationRequest(_message.Message):
    __slots__ = ("provider", "verification_id")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    provider: VerificationProvider
    verification_id: str
    def __init__(self, provider: _Optional[_Union[VerificationProvider, str]] = ..., verification_id: _Optional[str] = ...) -> None: ...

class DuplicateInfo(_message.Message):
    __slots__ = ("exists", "sign_in_methods", "masked_email")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    SIGN_IN_METHODS_FIELD_NUMBER: _ClassVar[int]
    MASKED_EMAIL_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    sign_in_methods: _containers.RepeatedScalarFieldContainer[str]
    masked_email: str
    def __init__(self, exists: _Optional[bool] = ..., sign_in_methods: _Optional[_Iterable[str]] = ..., masked_email: _Optional[str] = ...) -> None: ...

class CompleteVerificationResponse(_message.Message):
    __slots__ = ("verification_token", "name", "birth_date", "age", "is_under_14", "duplicate", "verification_token_expires_at")
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    IS_UNDER_14_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    verification_token: str
    name: str
    birth_date: str
    age: int
    is_under_14: bool
    duplicate: DuplicateInfo
    verification_token_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, verification_token: _Optional[str] = ..., name: _Optional[str] = ..., birth_date: _Optional[str] = ..., age: _Optional[int] = ..., is_under_14: _Optional[bool] = ..., duplicate: _Optional[_Union[DuplicateInfo, _Mapping]] = ..., verification_token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CheckAgeRequest(_message.Message):
    __slots__ = ("account", "verification_token", "birth_date", "policy", "minimum_age", "as_of")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_AGE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    account: _empty_pb2.Empty
    verification_token: str
    birth_date: str
    policy: AgePolicy
    minimum_age: int
    as_of: str
    def __init__(self, account: _Optional[_Union[_empty_pb2.Empty, _Mapping]] = ..., verification_token: _Optional[str] = ..., birth_date: _Optional[str] = ..., policy: _Optional[_Union[AgePolicy, str]] = ..., minimum_age: _Optional[int] = ..., as_of: _Optional[str] = ...) -> None: ...

class CheckAgeResponse(_message.Message):
    __slots__ = ("age", "allowed", "assurance", "changes_on")
    AGE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ASSURANCE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_ON_FIELD_NUMBER: _ClassVar[int]
    age: int
    allowed: bool
    assurance: AgeAssurance
    changes_on: str
    def __init__(self, age: _Optional[int] = ..., allowed: _Optional[bool] = ..., assurance: _Optional[_Union[AgeAssurance, str]] = ..., changes_on: _Optional[str] = ...) -> None: ...
