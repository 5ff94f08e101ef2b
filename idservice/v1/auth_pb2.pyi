import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idservice.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PasswordLoginRequest(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class PasswordLoginResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _common_pb2.Session
    def __init__(self, session: _Optional[_Union[_common_pb2.Session, _Mapping]] = ...) -> None: ...

class SnsLoginRequest(_message.Message):
    __slots__ = ("provider", "id_token", "nonce", "authorization_code", "code_verifier", "redirect_uri", "kakao_access_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_VERIFIER_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    KAKAO_ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: _common_pb2.SnsProvider
    id_token: str
    nonce: str
    authorization_code: str
    code_verifier: str
    redirect_uri: str
    kakao_access_token: str
    def __init__(self, provider: _Optional[_Union[_common_pb2.SnsProvider, str]] = ..., id_token: _Optional[str] = ..., nonce: _Optional[str] = ..., authorization_code: _Optional[str] = ..., code_verifier: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., kakao_access_token: _Optional[str] = ...) -> None: ...

class SignupPrefill(_message.Message):
    __slots__ = ("email", "name", "birth_date")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    email: str
    name: str
    birth_date: str
    def __init__(self, email: _Optional[str] = ..., name: _Optional[str] = ..., birth_date: _Optional[str] = ...) -> None: ...

class SignupRequired(_message.Message):
    __slots__ = ("sns_signup_ticket", "prefill")
    SNS_SIGNUP_TICKET_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    sns_signup_ticket: str
    prefill: SignupPrefill
    def __init__(self, sns_signup_ticket: _Optional[str] = ..., prefill: _Optional[_Union[SignupPrefill, _Mapping]] = ...) -> None: ...

class SnsLoginResponse(_message.Message):
    __slots__ = ("session", "signup_required")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SIGNUP_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    session: _common_pb2.Session
    signup_required: SignupRequired
    def __init__(self, session: _Optional[_Union[_common_pb2.Session, _Mapping]] = ..., signup_required: _Optional[_Union[SignupRequired, _Mapping]] = ...) -> None: ...

class LinkSnsIdentityRequest(_message.Message):
    __slots__ = ("provider", "id_token", "nonce", "authorization_code", "code_verifier", "redirect_uri", "kakao_access_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_VERIFIER_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    KAKAO_ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: _common_pb2.SnsProvider
    id_token: str
    nonce: str
    authorization_code: str
    code_verifier: str
    redirect_uri: str
    kakao_access_token: str
    def __init__(self, provider: _Optional[_Union[_common_pb2.SnsProvider, str]] = ..., id_token: _Optional[str] = ..., nonce: _Optional[str] = ..., authorization_code: _Optional[str] = ..., code_verifier: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., kakao_access_token: _Optional[str] = ...) -> None: ...

class LinkSnsIdentityResponse(_message.Message):
    __slots__ = ("sign_in_methods",)
    SIGN_IN_METHODS_FIELD_NUMBER: _ClassVar[int]
    sign_in_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sign_in_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class UnlinkSnsIdentityRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: _common_pb2.SnsProvider
    def __init__(self, provider: _Optional[_Union[_common_pb2.SnsProvider, str]] = ...) -> None: ...

class UnlinkSnsIdentityResponse(_message.Message):
    __slots__ = ("sign_in_methods",)
    SIGN_IN_METHODS_FIELD_NUMBER: _ClassVar[int]
    sign_in_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sign_in_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class RefreshSessionRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class RefreshSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _common_pb2.Session
    def __init__(self, session: _Optional[_Union[_common_pb2.Session, _Mapping]] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IntrospectTokenRequest(_message.Message):
    __slots__ = ("access_token",)
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    def __init__(self, access_token: _Optional[str] = ...) -> None: ...

class IntrospectTokenResponse(_message.Message):
    __slots__ = ("active", "account_id", "session_id", "expires_at", "age_band", "marketing_opt_in", "processing_suspended", "third_party_provision_opt_in")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    MARKETING_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_PROVISION_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    active: bool
    account_id: str
    session_id: str
    expires_at: _timestamp_pb2.Timestamp
    age_band: str
    marketing_opt_in: bool
    processing_suspended: bool
    third_party_provision_opt_in: bool
    def __init__(self, active: _Optional[bool] = ..., account_id: _Optional[str] = ..., session_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age_band: _Optional[str] = ..., marketing_opt_in: _Optional[bool] = ..., processing_suspended: _Optional[bool] = ..., third_party_provision_opt_in: _Optional[bool] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("jwks_json",)
    JWKS_JSON_FIELD_NUMBER: _ClassVar[int]
    jwks_json: str
    def __init__(self, jwks_json: _Optional[str] = ...) -> None: ...
