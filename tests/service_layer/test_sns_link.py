"""LinkSnsIdentity on the fakes: which person a Kakao CI is taken as."""

from __future__ import annotations

import dataclasses

from idservice.domain.errors import Reason
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsCredential, SnsIdentityProvider
from idservice.service_layer.registry import USE_CASES
from idservice.service_layer.sns_login import LinkSnsIdentity
from idservice.service_layer.use_cases import UseCases
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Harness


class KakaoOf(SnsIdentityProvider):
    """Kakao vouching for one person: a subject and the CI Kakao holds for them."""

    provider = SnsProvider.KAKAO

    def __init__(self, subject: str, ci: str | None) -> None:
        self.profile = SnsProfile(provider=SnsProvider.KAKAO, subject=subject, ci=ci)

    def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
        return self.profile


def with_kakao(h: Harness, kakao: KakaoOf) -> Harness:
    h.deps = dataclasses.replace(h.deps, sns={SnsProvider.KAKAO: kakao})
    h.use_cases = UseCases(h.deps, USE_CASES)
    return h


def link(h: Harness, access_token: str) -> list[str]:
    return h.handle(
        LinkSnsIdentity(
            access_token=access_token,
            provider=SnsProvider.KAKAO,
            credential=SnsCredential(id_token="kakao-id-token"),
        )
    )


def test_a_kakao_ci_is_not_taken_by_an_account_verified_by_its_di_alone() -> None:
    """A's account knows its person by a DI only. Linking a Kakao identity whose CI is B's (a
    relative's phone) links it, but the CI cannot be checked against A's DI, so it does not
    become A's: B can still verify and sign up, and A's DI still finds A's account."""
    relative = verified_person()
    assert relative.ci is not None
    h = with_kakao(Harness.build(), KakaoOf("kakao-of-b", relative.ci))
    person = verified_person(ci=False)
    account = h.sign_up_person(person)
    assert account.session is not None

    assert "kakao" in link(h, account.session.access_token)

    with h.uow(readonly=True) as tx:
        stored = tx.accounts.get(account.account.id)
    assert stored is not None and stored.ci is None and stored.di == person.di
    assert h.verify(relative).duplicate.exists is False
    assert h.sign_up_person(relative).account.ci == relative.ci
    assert h.verify(person).duplicate.exists is True


def test_a_kakao_ci_is_taken_by_an_account_that_knows_no_person() -> None:
    """Without required verification an account may hold neither CI nor DI: the linked Kakao
    CI becomes its person's, so that person's own signup is a duplicate."""
    person = verified_person()
    assert person.ci is not None
    policy = dataclasses.replace(Harness.build().policy, require_identity_verification=False)
    h = with_kakao(Harness.build(policy), KakaoOf("kakao-of-a", person.ci))
    account = h.sign_up(
        name=person.name, phone_number=person.phone_number, birth_date=str(person.birth_date)
    )
    assert account.session is not None and account.account.ci is None

    assert "kakao" in link(h, account.session.access_token)

    with h.uow(readonly=True) as tx:
        stored = tx.accounts.get(account.account.id)
    assert stored is not None and stored.ci == person.ci
    assert h.verify(person).duplicate.exists is True


def test_a_kakao_ci_of_another_account_is_refused_even_where_it_would_not_be_taken() -> None:
    """The CI is not taken by an account verified by its DI alone, but a Kakao identity of a
    person who has an account of their own is still not linked to someone else's."""
    relative = verified_person()
    assert relative.ci is not None
    h = with_kakao(Harness.build(), KakaoOf("kakao-of-b", relative.ci))
    h.sign_up_person(relative)
    account = h.sign_up_person(verified_person(ci=False))
    assert account.session is not None

    error = h.fails(
        LinkSnsIdentity(
            access_token=account.session.access_token,
            provider=SnsProvider.KAKAO,
            credential=SnsCredential(id_token="kakao-id-token"),
        ),
        Reason.IDENTITY_ALREADY_REGISTERED,
    )
    assert error.metadata["sign_in_methods"] == "password"
    with h.uow(readonly=True) as tx:
        assert tx.sns_identities.find(SnsProvider.KAKAO, "kakao-of-b") is None
