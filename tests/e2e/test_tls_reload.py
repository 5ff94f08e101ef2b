"""A renewed TLS certificate is served from the next connection on, without a restart; a
rotation caught half-written (a new certificate beside the old key) keeps the set before."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idservice.bootstrap import build_app
from idservice.entrypoints.grpc.server import RunningServer, create_server
from tests.conftest import make_settings
from tests.support.tls import Issued, TestAuthority

WAIT_SECONDS = 30.0


@pytest.fixture
def authority() -> TestAuthority:
    return TestAuthority()


@pytest.fixture
def files(tmp_path: Path, authority: TestAuthority) -> dict[str, Path]:
    tls = authority.write_server_files(tmp_path)
    del tls["tls_client_ca_file"]  # server TLS alone: a bare handshake shows its certificate
    return tls


@pytest.fixture
def running(tmp_path: Path, files: dict[str, Path]) -> Iterator[RunningServer]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}", **files)
    app = build_app(settings)
    server = create_server(app, "127.0.0.1:0")
    try:
        yield server
    finally:
        server.halt()
        app.close()


def presented(
    port: int, authority: TestAuthority, client: tuple[Path, Path] | None = None
) -> x509.Certificate:
    """The certificate a new connection's handshake is served (checked against the CA), as a
    client with `client`'s certificate and key files when the server asks for one."""
    context = ssl.create_default_context(cadata=authority.pem.decode())
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def serving_over_tls(port: int, authority: TestAuthority) -> int:
    credentials = grpc.ssl_channel_credentials(root_certificates=authority.pem)
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=WAIT_SECONDS
        )
    return int(answer.status)


def replace(path: Path, content: bytes, mtime_ns: int) -> None:
    """Write `content` anew (another inode, as a Secret's update), with its own modification
    time (two writes within one clock tick would otherwise look alike)."""
    staged = path.with_suffix(".new")
    staged.write_bytes(content)
    os.utime(staged, ns=(mtime_ns, mtime_ns))
    staged.replace(path)


def certificate_of(issued: Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.certificate)


def test_a_renewed_certificate_is_served_to_new_connections(
    running: RunningServer, files: dict[str, Path], authority: TestAuthority
) -> None:
    port = running.port
    first = presented(port, authority)
    renewed = authority.issue("127.0.0.1", server=True)
    assert certificate_of(renewed).serial_number != first.serial_number
    stamp = files["tls_cert_file"].stat().st_mtime_ns

    # Half-way through the rotation the certificate is new and the key is not: the set before
    # is still served, and calls go on.
    replace(files["tls_cert_file"], renewed.certificate, stamp + 10**9)
    assert presented(port, authority).serial_number == first.serial_number
    assert serving_over_tls(port, authority) == health_pb2.HealthCheckResponse.SERVING

    replace(files["tls_key_file"], renewed.key, stamp + 2 * 10**9)
    assert presented(port, authority).serial_number == certificate_of(renewed).serial_number
    assert serving_over_tls(port, authority) == health_pb2.HealthCheckResponse.SERVING


def test_mutual_tls_holds_across_a_reload(tmp_path: Path, authority: TestAuthority) -> None:
    tls = authority.write_server_files(tmp_path)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'idservice.db'}", **tls)
    app = build_app(settings)
    server = create_server(app, "127.0.0.1:0")
    client = authority.issue("mobile-backend", server=False)
    client_files = (tmp_path / "client.pem", tmp_path / "client.key")
    client_files[0].write_bytes(client.certificate)
    client_files[1].write_bytes(client.key)

    def answer(with_certificate: bool) -> str:
        """SERVING, or the code of the refusal."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=authority.pem,
            private_key=client.key if with_certificate else None,
            certificate_chain=client.certificate if with_certificate else None,
        )
        with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.RpcError as error:
                assert isinstance(error, grpc.Call)
                return str(error.code().name)
        return "SERVING"

    try:
        assert (answer(True), answer(False)) == ("SERVING", "UNAVAILABLE")
        renewed = authority.issue("127.0.0.1", server=True)
        stamp = tls["tls_cert_file"].stat().st_mtime_ns
        replace(tls["tls_cert_file"], renewed.certificate, stamp + 10**9)
        replace(tls["tls_key_file"], renewed.key, stamp + 2 * 10**9)
        assert presented(server.port, authority, client_files) == certificate_of(renewed)
        # The client CA and the demand for a client certificate came along.
        assert (answer(True), answer(False)) == ("SERVING", "UNAVAILABLE")
    finally:
        server.halt()
        app.close()
