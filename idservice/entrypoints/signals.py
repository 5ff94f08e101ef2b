"""Waiting in the main thread for a stop signal (SIGTERM, SIGINT)."""

from __future__ import annotations

import threading

# How often a main thread waiting for a stop signal wakes up to run Python's signal handlers.
SIGNAL_CHECK_SECONDS = 0.5


def wait_for_signal(stop: threading.Event) -> None:
    """Wait until `stop` is set by a signal handler.

    In short waits, not one endless one: the kernel may deliver the signal to any thread (a
    grpc thread, say). Python then only marks it, and the main thread runs the handler the next
    time it runs Python code, which a wait without a timeout would never do.
    """
    while not stop.wait(SIGNAL_CHECK_SECONDS):
        pass
