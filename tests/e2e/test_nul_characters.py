"""A NUL character in any string of any request is refused before any work, on both databases.

PostgreSQL's text cannot hold U+0000: without the check at the boundary, an id such as
`GetConsentRequest(id="a\\x00b")` reached the database and failed there (INTERNAL on PostgreSQL,
NOT_FOUND on SQLite). Every string field of every RPC, opaque ones and nested ones included, is
tried here with one NUL in it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from idservice.bootstrap import App
from idservice.entrypoints.grpc.handling import NUL_REFUSED
from idservice.v1 import account_pb2, auth_pb2, guardian_consent_pb2, identity_pb2
from tests.conftest import make_settings
from tests.support.client import Client, failure_of
from tests.support.postgres import PostgresCluster
from tests.support.serving import serving

SERVICES: dict[str, ServiceDescriptor] = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    "accounts": account_pb2.DESCRIPTOR.services_by_name["AccountService"],
    "auth": auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    "guardian": guardian_consent_pb2.DESCRIPTOR.services_by_name["GuardianConsentService"],
}
WITH_NUL = "a\x00b"


def string_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[str]:
    """Every singular string field's path, into nested messages (the API has no cycles)."""
    for field in descriptor.fields:
        if field.is_repeated:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            yield f"{prefix}{field.name}"
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            yield from string_paths(field.message_type, f"{prefix}{field.name}.")


def with_nul(descriptor: Descriptor, path: str) -> Message:
    request = GetMessageClass(descriptor)()
    *parents, leaf = path.split(".")
    target = request
    for name in parents:
        target = getattr(target, name)
    setattr(target, leaf, WITH_NUL)
    return request


CASES = [
    pytest.param(stub, method.name, method.input_type, path, id=f"{method.name}.{path}")
    for stub, service in SERVICES.items()
    for method in service.methods
    for path in string_paths(method.input_type)
]


def test_every_rpc_with_a_string_field_is_tried() -> None:
    tried = {case.values[1] for case in CASES}
    every = {method.name for service in SERVICES.values() for method in service.methods}
    # These take no string: the bearer token travels in metadata, and the rest are enums,
    # booleans or nothing.
    assert every - tried == {
        "ExportPersonalData",
        "GetAccount",
        "GetJwks",
        "UnlinkSnsIdentity",
        "UpdateConsents",
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served_module(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_cluster: PostgresCluster | None,
) -> Iterator[tuple[App, Client]]:
    """One server per backend for the module (the check runs before any work, so the calls
    cannot disturb one another)."""
    directory = Path(tmp_path_factory.mktemp("nul"))
    if request.param == "sqlite":
        database_url = f"sqlite:///{directory / 'idservice.db'}"
    elif postgres_cluster is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/test installs them)")
    else:
        database_url = postgres_cluster.create_database(f"nul_{os.getpid()}")
    with serving(make_settings(directory, database_url)) as pair:
        yield pair


@pytest.mark.parametrize(("stub", "method", "descriptor", "path"), CASES)
def test_a_nul_in_any_string_is_invalid_input(
    served_module: tuple[App, Client], stub: str, method: str, descriptor: Descriptor, path: str
) -> None:
    _app, client = served_module
    call = getattr(getattr(client, stub), method)
    failure = failure_of(functools.partial(call, with_nul(descriptor, path), timeout=30))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert (path, NUL_REFUSED) in failure.violations
