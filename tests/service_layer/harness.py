"""The use cases wired to in-memory fakes of every port, with shortcuts for common steps.

svc = Harness.build()
token = svc.verify(verified_person()).token
result = svc.sign_up(token)                     # SignUpResult
error = svc.fails(PasswordLogin(email=..., password="wrong"))
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from idservice.domain.errors import DomainError, Reason
from idservice.domain.identity import VerifiedPerson
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.policy import Policy
from idservice.service_layer.registry import USE_CASES
from idservice.service_layer.sessions import IssuedSession
from idservice.service_layer.signup import SignUp
from idservice.service_layer.signup_replay import SignUpResult
from idservice.service_layer.use_cases import Command, Dependencies, UseCases
from idservice.service_layer.verification import CompletedVerification, CompleteVerification
from tests.fakes.providers import FakeIdentityProvider, RecordingSink, new_phone_number
from tests.fakes.security import FakeClock, FakePasswordHasher, FakeSecretsCipher, FakeTokenIssuer
from tests.fakes.storage import FakeUnitOfWorkFactory

R = TypeVar("R")

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "a different horse, battery and staple"
_emails = itertools.count(1)


def new_email() -> str:
    return f"user{next(_emails)}@example.com"


@dataclass(frozen=True)
class Guardian:
    name: str = "김보호"
    phone_number: str = field(default_factory=new_phone_number)


@dataclass
class Harness:
    """Every fake port, the `Dependencies` built from them, and `UseCases` over those."""

    uow: FakeUnitOfWorkFactory
    hasher: FakePasswordHasher
    tokens: FakeTokenIssuer
    cipher: FakeSecretsCipher
    provider: FakeIdentityProvider
    sink: RecordingSink
    clock: FakeClock
    policy: Policy
    deps: Dependencies
    use_cases: UseCases

    @classmethod
    def build(
        cls,
        policy: Policy | None = None,
        *,
        hasher: FakePasswordHasher | None = None,
        provider: FakeIdentityProvider | None = None,
    ) -> Harness:
        """`provider` (the sandbox by default) is the only one, and the policy's default."""
        uow, tokens = FakeUnitOfWorkFactory(), FakeTokenIssuer()
        hasher = hasher or FakePasswordHasher()
        provider = provider or FakeIdentityProvider()
        cipher, sink, clock = FakeSecretsCipher(), RecordingSink(), FakeClock()
        policy = dataclasses.replace(policy or Policy(), identity_provider=provider.name)
        deps = Dependencies(
            uow=uow,
            hasher=hasher,
            tokens=tokens,
            cipher=cipher,
            providers={provider.name: provider},
            sink=sink,
            policy=policy,
            clock=clock,
        )
        return cls(
            uow,
            hasher,
            tokens,
            cipher,
            provider,
            sink,
            clock,
            policy,
            deps,
            UseCases(deps, USE_CASES),
        )

    def handle(self, cmd: Command[R]) -> R:
        return self.use_cases.handle(cmd)

    def fails(self, cmd: Command[Any], reason: Reason | None = None) -> DomainError:
        """The DomainError the command raises (checked against `reason` when given)."""
        with pytest.raises(DomainError) as info:
            self.handle(cmd)
        if reason is not None:
            assert info.value.reason is reason, info.value
        return info.value

    def verify(self, person: VerifiedPerson) -> CompletedVerification:
        """CompleteVerification of `person` through the fake provider (a new id each time)."""
        return self.handle(
            CompleteVerification(provider=None, verification_id=self.provider.verify(person))
        )

    def signup(
        self,
        verification_token: str = "",
        *,
        email: str | None = None,
        password: str = PASSWORD,
        guardian: Guardian | None = None,
        **fields: Any,
    ) -> SignUp:
        """A SignUp command accepting the current terms; `fields` override any other field."""
        values: dict[str, Any] = {
            "email": email or new_email(),
            "password": password,
            "verification_token": verification_token,
            "consents_given": True,
            "terms_version": self.policy.terms_version,
            "privacy_policy_version": self.policy.privacy_policy_version,
        }
        if guardian is not None:
            values.update(
                guardian_given=True,
                guardian_name=guardian.name,
                guardian_phone_number=guardian.phone_number,
            )
        values.update(fields)
        return SignUp(**values)

    def sign_up(self, verification_token: str = "", **kwargs: Any) -> SignUpResult:
        return self.handle(self.signup(verification_token, **kwargs))

    def sign_up_person(self, person: VerifiedPerson, **kwargs: Any) -> SignUpResult:
        """Verify `person`, then sign them up with the token."""
        return self.sign_up(self.verify(person).token, **kwargs)

    def login(self, email: str, password: str = PASSWORD) -> IssuedSession:
        return self.handle(PasswordLogin(email=email, password=password))
