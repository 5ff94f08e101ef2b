"""A webhook receiver for development: prints each outbox event the service delivers.

    .venv/bin/python scripts/webhook_receiver.py --listen 127.0.0.1:8099 --secret dev-secret
    IDSERVICE_NOTIFY_WEBHOOK_URL=http://127.0.0.1:8099/events \
        IDSERVICE_NOTIFY_WEBHOOK_SECRET=dev-secret scripts/serve

One JSON line per event on stdout: the event document as delivered (`event_id`, `type`,
`occurred_at`, `data`) and whether its `X-Idservice-Signature` checked out under `--secret`.
A `guardian_consent.requested` event carries the consent code an SMS sender would text to the
guardian: this prints it, which is what trying the guardian flow by hand needs, and why the
receiver listens on loopback only. Answers 204, or 401 to a POST whose signature is wrong (the
service then retries it, as it would with a real receiver).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

# A delivery older (or newer) than this is refused, as a receiver should against replays.
SIGNATURE_TOLERANCE_SECONDS = 300
# Larger bodies are refused (413) unread; a client that stalls is dropped after this long.
MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT_SECONDS = 10


def signature_ok(header: str, body: bytes, secret: str, *, now: float) -> bool:
    """`t=<unix time>,v1=<hex HMAC-SHA-256 over "t.body">`, recent, under `secret`."""
    parts = dict(part.partition("=")[::2] for part in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if not given.isascii():
        return False
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_SECONDS

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length") or "0"
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                self.send_error(413 if length.isdigit() else 400)
                return
            body = self.rfile.read(int(length))
            verified = signature_ok(
                self.headers.get("X-Idservice-Signature", ""), body, secret, now=time.time()
            )
            try:
                event: object = json.loads(body)
            except ValueError:
                event = body.decode("utf-8", "replace")
            line = {"signature": "ok" if verified else "WRONG", "event": event}
            print(json.dumps(line, ensure_ascii=False), flush=True)
            self.send_response(204 if verified else 401)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """No access lines: stdout holds the events alone."""

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8099", help="loopback host:port")
    parser.add_argument("--secret", required=True, help="IDSERVICE_NOTIFY_WEBHOOK_SECRET")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        loopback = host == "localhost" or (
            ip_address(host).version == 4 and ip_address(host).is_loopback
        )
    except ValueError:
        loopback = False
    if not loopback or not (port.isascii() and port.isdigit() and int(port) < 65536):
        parser.error("--listen must be an IPv4 loopback host:port (it prints consent codes)")
    try:
        server = ThreadingHTTPServer((host, int(port)), make_handler(args.secret))
    except OSError as exc:
        parser.error(f"cannot listen on {args.listen}: {exc.strerror}")
    bound = f"{host}:{server.server_address[1]}"
    print(f"webhook receiver listening on {bound}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
