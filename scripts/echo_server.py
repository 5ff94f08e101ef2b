"""A bare gRPC echo server shaped like idservice's (64-thread pool): the benchmark's RPC floor."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from types import FrameType

import grpc

SERVICE = "idservice.bench.Echo"
METHOD = "Echo"
# The full method path a client calls; requests and responses are raw bytes (no proto).
ECHO_METHOD = f"/{SERVICE}/{METHOD}"
# The same thread-pool shape as idservice's server (Settings.max_workers default).
DEFAULT_MAX_WORKERS = 64
# Printed once the port is bound; the benchmark and the tests read the address from it.
READY_PREFIX = "echo server listening on "


def _echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
    return request


def create_echo_server(
    address: str = "127.0.0.1:0", *, max_workers: int = DEFAULT_MAX_WORKERS
) -> tuple[grpc.Server, int]:
    """Build and start the echo server on `address` (port 0 picks a free one); returns the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port


def loopback_hostport(text: str) -> str:
    """`host:port` whose host is a loopback address (the floor is only ever measured locally)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected host:port, e.g. 127.0.0.1:0")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise argparse.ArgumentTypeError("the echo server listens on a loopback address only")
    return text.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--listen", type=loopback_hostport, default="127.0.0.1:0", help="host:port (loopback)"
    )
    parser.add_argument("--max-workers", type=int, default=DEFAULT_MAX_WORKERS)
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop by itself after this many seconds (0: run until SIGTERM/SIGINT)",
    )
    args = parser.parse_args(argv)
    if args.max_workers < 1 or args.duration < 0:
        parser.error("--max-workers must be at least 1 and --duration not negative")
    server, port = create_echo_server(args.listen, max_workers=args.max_workers)
    host = args.listen.rpartition(":")[0]
    print(f"{READY_PREFIX}{host}:{port} method {ECHO_METHOD}", flush=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait(args.duration or None)
    server.stop(1.0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
