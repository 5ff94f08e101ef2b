"""`scripts/demo`: the README's "Trying it" journey against a running idservice, step by step.

A new sandbox person each run: identity verification, sign-up, password login, GetAccount with
the access token, a refresh (tokens rotate), logout with the new refresh token, a health check,
then the same person verified again (flagged as a duplicate) and their second sign-up refused
with ALREADY_EXISTS / IDENTITY_ALREADY_REGISTERED. Tokens are passed from step to step, and
shown shortened; the password is never printed.

    scripts/serve                      # in one terminal
    scripts/demo                       # in another (default --target 127.0.0.1:50051)

Exit 0 when every step answered as the contract says, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

if __package__ in {None, ""}:
    # Run as a file: make the repository root importable (scripts.harness, as mypy names it).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.harness import (
    DEFAULT_TERMS_VERSION,
    DUPLICATE_REFUSAL,
    IdClient,
    new_password,
    new_person,
    open_channel,
    read_error,
    target_refusal,
)

R = TypeVar("R")
DEFAULT_TARGET = "127.0.0.1:50051"
# Fields whose values are credentials: shown as their first characters only.
SECRET_FIELDS = frozenset({"access_token", "refresh_token", "verification_token"})
SHOWN_CHARACTERS = 12
RPC_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0


class StepFailed(Exception):
    """A step answered otherwise than the contract says."""


def shorten(value: str) -> str:
    return value if len(value) <= SHOWN_CHARACTERS else f"{value[:SHOWN_CHARACTERS]}…"


def shown(value: Any) -> Any:
    """A message as JSON-ready data, with every credential shortened."""
    if isinstance(value, Mapping):
        return {
            key: shorten(item) if key in SECRET_FIELDS and isinstance(item, str) else shown(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [shown(item) for item in value]
    return value


def answer_text(message: Message) -> str:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(shown(data), ensure_ascii=False, indent=2)


class Journey:
    """Numbered steps, each printed with what it sent and what came back."""

    def __init__(self, client: IdClient, health: Any) -> None:
        self.client = client
        self.health = health
        self.step = 0

    def call(self, title: str, sent: str, rpc: Callable[[], R]) -> R:
        self.step += 1
        print(f"\n{self.step}. {title}")
        if sent:
            print(f"   sent: {sent}")
        try:
            answer = rpc()
        except grpc.RpcError as error:
            refused = read_error(error)
            raise StepFailed(f"{title} was refused: {refused.code} {refused.reason}") from None
        if isinstance(answer, Message):
            print("   answer: " + answer_text(answer).replace("\n", "\n   "))
        return answer

    def refused(
        self, title: str, sent: str, rpc: Callable[[], Any], expected: tuple[str, str]
    ) -> None:
        self.step += 1
        print(f"\n{self.step}. {title}")
        print(f"   sent: {sent}")
        try:
            rpc()
        except grpc.RpcError as error:
            refusal = read_error(error)
            if refusal.key != expected:
                raise StepFailed(
                    f"{title}: expected {' '.join(expected)}, got {refusal.code} {refusal.reason}"
                ) from None
            details = ", ".join(f"{k}={v}" for k, v in sorted(refusal.metadata.items()))
            print(f"   refused, as it should be: {refusal.code} {refusal.reason} ({details})")
            return
        raise StepFailed(f"{title} was accepted; expected {' '.join(expected)}")

    def run(self) -> None:
        c = self.client
        person = new_person(random.Random())
        email = f"demo-{uuid.uuid4().hex[:10]}@example.com"
        password = new_password()

        first_id = person.verification_id(1)
        verified = self.call(
            "IdentityService/CompleteVerification: a new sandbox person",
            f"verification_id={first_id}",
            lambda: c.verify(person, attempt=1),
        )
        signed = self.call(
            "AccountService/SignUp with the verification token",
            f"email={email}, password=(not shown), "
            f"verification_token={shorten(verified.verification_token)}, "
            f"consents=terms {c.terms_version}",
            lambda: c.sign_up(verified.verification_token, email=email, password=password),
        )
        logged_in = self.call(
            "AuthService/PasswordLogin",
            f"email={email}, password=(not shown)",
            lambda: c.login(email, password),
        )
        session = logged_in.session
        account = self.call(
            "AccountService/GetAccount with the access token",
            f"authorization: Bearer {shorten(session.access_token)}",
            lambda: c.get_account(session.access_token),
        )
        if account.account.id != signed.account.id:
            raise StepFailed("GetAccount answered with another account")
        refreshed = self.call(
            "AuthService/RefreshSession (refresh tokens rotate)",
            f"refresh_token={shorten(session.refresh_token)}",
            lambda: c.refresh(session.refresh_token),
        )
        new_refresh = refreshed.session.refresh_token
        self.call(
            "AuthService/Logout with the new refresh token",
            f"refresh_token={shorten(new_refresh)}",
            lambda: c.logout(new_refresh),
        )
        self.call(
            "grpc.health.v1.Health/Check",
            "",
            lambda: self.health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_SECONDS),
        )
        again = self.call(
            "IdentityService/CompleteVerification: the same person again (attempt 2)",
            f"verification_id={person.verification_id(2)}",
            lambda: c.verify(person, attempt=2),
        )
        if not again.duplicate.exists:
            raise StepFailed("the same person was not flagged duplicate.exists")
        self.refused(
            "AccountService/SignUp of the same person with another email",
            f"email=another-{email}, verification_token={shorten(again.verification_token)}",
            lambda: c.sign_up(
                again.verification_token, email=f"another-{email}", password=new_password()
            ),
            DUPLICATE_REFUSAL,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default=DEFAULT_TARGET, help="host:port of idservice")
    parser.add_argument(
        "--terms-version",
        default=DEFAULT_TERMS_VERSION,
        help="terms and privacy policy version the server asks SignUp to accept",
    )
    args = parser.parse_args(argv)
    refusal = target_refusal(args.target, allow_remote=False)
    if refusal:
        parser.error(f"--target: {refusal}")
    try:
        channel = open_channel(args.target, CONNECT_TIMEOUT_SECONDS)
    except RuntimeError:
        print(
            f"demo: no idservice answers at {args.target}; start one with scripts/serve",
            file=sys.stderr,
        )
        return 1
    with channel:
        client = IdClient(channel, terms_version=args.terms_version, timeout=RPC_TIMEOUT_SECONDS)
        journey = Journey(client, health_pb2_grpc.HealthStub(channel))
        print(f"idservice at {args.target}: the README's journey, with a new sandbox person")
        try:
            journey.run()
        except StepFailed as exc:
            print(f"\ndemo: FAILED at step {journey.step}: {exc}", file=sys.stderr)
            return 1
    print(f"\ndemo: all {journey.step} steps answered as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
