"""Requests outside the served API get rich errors too: oversized ones, RPCs not yet served."""

from __future__ import annotations

import grpc
import pytest

from idservice.v1 import auth_pb2
from tests.support.client import Client, decode


def test_request_over_64_kib_is_validation_failed(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.auth.PasswordLogin(
            auth_pb2.PasswordLoginRequest(email="a@example.com", password="x" * 70_000)
        )
    failure = decode(info.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "VALIDATION_FAILED"
    assert failure.fields == ["request"]
