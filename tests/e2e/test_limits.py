"""Requests outside the served API get rich errors too: oversized ones, RPCs not yet served."""

from __future__ import annotations

import grpc
import pytest

from idservice.v1 import account_pb2, auth_pb2
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


def test_unimplemented_rpcs_carry_error_info(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.accounts.Withdraw(account_pb2.WithdrawRequest())
    failure = decode(info.value)
    assert failure.code == grpc.StatusCode.UNIMPLEMENTED
    assert (failure.reason, failure.domain) == ("UNIMPLEMENTED", "idservice.v1")
