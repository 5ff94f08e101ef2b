"""What a use case learns about the call it serves that the transport records: the account the
call acted as, for the connection log and the access line.

A context variable: the gRPC `rpc` wrapper opens a fresh scope per call (`call_scope`, since
handler threads are reused), the use cases name the account once they know it (`identify`: an
access token's subject once its session was found live, the account a session was issued to),
and the wrapper reads it (`identified_account`) when the call ends. Work run on other threads
(the Argon2 pool) does not see it and never sets it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_account: ContextVar[str | None] = ContextVar("idservice_call_account", default=None)


def identify(account_id: str) -> None:
    """The current call acts as `account_id` (the last one named wins)."""
    _account.set(account_id)


def identified_account() -> str | None:
    """The account the current call acted as, if one was named."""
    return _account.get()


@contextmanager
def call_scope() -> Iterator[None]:
    """A call's scope: no account until one is named, and none left behind for the next call."""
    token = _account.set(None)
    try:
        yield
    finally:
        _account.reset(token)
