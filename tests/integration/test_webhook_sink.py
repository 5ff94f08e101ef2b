"""The webhook sink against receivers that misbehave on the wire (raw sockets on loopback)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from idservice.adapters.notify import WebhookSink
from idservice.service_layer.ports import DeliveryFailed

WAIT_SECONDS = 30.0


def serve_once(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-connection HTTP receiver on loopback that reads the request, then runs `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(WAIT_SECONDS)
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(4096)
            try:
                answer(connection)
                stop.wait(WAIT_SECONDS)
            except OSError:
                pass  # the client gave up and closed: what the test wants

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        listener.close()
        thread.join(WAIT_SECONDS)


def trickle_headers(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\n")
    while True:  # one byte of a header at a time, never finishing
        connection.sendall(b"X")
        time.sleep(0.2)


def endless_body(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        connection.sendall(b"1\r\nx\r\n")
        time.sleep(0.05)


@pytest.fixture
def trickling() -> Iterator[str]:
    yield from serve_once(trickle_headers)


@pytest.fixture
def streaming() -> Iterator[str]:
    yield from serve_once(endless_body)


def webhook_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "webhook"]


def test_a_receiver_that_never_finishes_its_answer_is_given_up_on(trickling: str) -> None:
    sink = WebhookSink(trickling, "secret", timeout=1.0)
    try:
        with pytest.raises(DeliveryFailed, match="longer than 1 s"):
            sink.deliver(event_id="e1", event_type="account.created", body=b"{}")
        # The abandoned call's connection was closed, so its thread ends too.
        deadline = time.monotonic() + WAIT_SECONDS
        while webhook_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert webhook_threads() == []
    finally:
        sink.close()


def test_the_answer_body_is_never_read(streaming: str) -> None:
    sink = WebhookSink(streaming, None, timeout=5.0)
    try:
        # A 200 whose body never ends is still a delivery: only the status line matters.
        sink.deliver(event_id="e2", event_type="account.created", body=b"{}")
    finally:
        sink.close()
