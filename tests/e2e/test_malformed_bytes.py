"""Request bytes that are no protobuf message at all still get the contract's error, not INTERNAL.

The hypothesis tests in test_no_internal.py build valid messages; these send raw bytes, the way
a buggy or hostile client on another stack can.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from idservice.v1 import account_pb2, auth_pb2, guardian_consent_pb2, identity_pb2
from tests.support.client import decode

SERVICES = [
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    account_pb2.DESCRIPTOR.services_by_name["AccountService"],
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    guardian_consent_pb2.DESCRIPTOR.services_by_name["GuardianConsentService"],
]
METHODS = [f"/{svc.full_name}/{method.name}" for svc in SERVICES for method in svc.methods]
# Methods whose field 1 is a string: invalid UTF-8 there is undecodable.
STRING_FIRST = [
    f"/{service.full_name}/{method.name}"
    for service in SERVICES
    for method in service.methods
    if (first := method.input_type.fields_by_number.get(1)) is not None
    and first.type == FieldDescriptor.TYPE_STRING
]

# Each is undecodable as any message: a length-delimited field running past the end, a varint
# that never ends, an end-group tag with no group.
MALFORMED = {
    "truncated": b"\x0a\x10abc",
    "endless-varint": b"\x08" + b"\xff" * 11,
    "bare-end-group": b"\x0c",
}
INVALID_UTF8 = b"\x0a\x02\xff\xfe"


def raw_call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.RpcError | None:
    # No serializers: the bytes go out as they are, and the answer stays bytes.
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(payload, timeout=10)
    except grpc.RpcError as error:
        return error
    return None


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_every_method_answers_undecodable_bytes_with_validation_failed(
    channel: grpc.Channel, payload: bytes
) -> None:
    answers: dict[str, str] = {}
    for method in METHODS:
        error = raw_call(channel, method, payload)
        assert error is not None, method
        failure = decode(error)
        answers[method] = f"{failure.code.name} {failure.reason} {failure.fields}"
        assert failure.domain == "idservice.v1", answers[method]
    # Methods whose capability has not landed answer UNIMPLEMENTED whatever the bytes.
    expected = {
        method: "UNIMPLEMENTED UNIMPLEMENTED []"
        if answers[method].startswith("UNIMPLEMENTED")
        else "INVALID_ARGUMENT VALIDATION_FAILED ['request']"
        for method in METHODS
    }
    assert answers == expected
    assert sum(a.startswith("INVALID_ARGUMENT") for a in answers.values()) >= 10


def test_invalid_utf8_in_a_string_field_is_validation_failed(channel: grpc.Channel) -> None:
    assert len(STRING_FIRST) >= 5
    for method in STRING_FIRST:
        error = raw_call(channel, method, INVALID_UTF8)
        assert error is not None, method
        failure = decode(error)
        assert failure.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)
        if failure.code == grpc.StatusCode.INVALID_ARGUMENT:
            assert (failure.reason, failure.fields) == ("VALIDATION_FAILED", ["request"]), method


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=200))
def test_arbitrary_bytes_never_fail_internally(
    channel: grpc.Channel, method: str, payload: bytes
) -> None:
    error = raw_call(channel, method, payload)
    if error is None:
        return  # the bytes happened to be a valid (if odd) request
    failure = decode(error)
    assert failure.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), failure
    assert failure.reason, failure
