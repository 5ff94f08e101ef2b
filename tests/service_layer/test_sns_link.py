"""LinkSnsIdentity, UnlinkSnsIdentity and an SNS withdrawal on the fakes: which person a Kakao CI
is taken as, and what an unlink ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from idservice.domain.errors import DomainError, Reason
from idservice.domain.sns import SnsProfile, SnsProvider
from idservice.service_layer.ports import SnsCredential, SnsIdentityProvider
from idservice.service_layer.privacy import Withdraw
from idservice.service_layer.profile import GetAccount
from idservice.service_layer.registry import USE_CASES
from idservice.service_layer.sessions import RefreshSession
from idservice.service_layer.sns_login import LinkSnsIdentity, SnsLogin, UnlinkSnsIdentity
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


class Vouching(SnsIdentityProvider):
    """A provider vouching for `subject` (signed in now); `meanwhile` runs while it answers,
    as another call would while this one waits on the provider."""

    def __init__(self, h: Harness, provider: SnsProvider, subject: str) -> None:
        self.provider = provider
        self._h, self._subject = h, subject
        self.meanwhile: Callable[[], object] | None = None

    def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        return SnsProfile(
            provider=self.provider, subject=self._subject, signed_in_at=self._h.clock()
        )


def _two_providers(h: Harness) -> tuple[Vouching, Vouching]:
    google = Vouching(h, SnsProvider.GOOGLE, "google-subject")
    kakao = Vouching(h, SnsProvider.KAKAO, "kakao-subject")
    h.deps = dataclasses.replace(h.deps, sns={SnsProvider.GOOGLE: google, SnsProvider.KAKAO: kakao})
    h.use_cases = UseCases(h.deps, USE_CASES)
    return google, kakao


def _credential() -> SnsCredential:
    return SnsCredential(id_token="an-id-token")


def _sns_session(h: Harness, provider: SnsProvider) -> str:
    result = h.handle(SnsLogin(provider=provider, credential=_credential()))
    assert result.session is not None
    return result.session.access_token


def _linked(h: Harness, access_token: str, provider: SnsProvider) -> list[str]:
    return h.handle(
        LinkSnsIdentity(access_token=access_token, provider=provider, credential=_credential())
    )


def _account_with_google() -> tuple[Harness, Vouching, Vouching, str, str]:
    """An account with a password and Google; its owner's (password) token, and the token of
    a session someone opened through the Google account."""
    h = Harness.build()
    google, kakao = _two_providers(h)
    owner = h.sign_up_person(verified_person())
    assert owner.session is not None
    assert _linked(h, owner.session.access_token, SnsProvider.GOOGLE) == ["password", "google"]
    return h, google, kakao, owner.session.access_token, _sns_session(h, SnsProvider.GOOGLE)


def _live(h: Harness, access_token: str) -> bool:
    try:
        h.handle(GetAccount(access_token=access_token))
    except DomainError as error:
        assert error.reason is Reason.TOKEN_INVALID
        return False
    return True


def test_unlinking_ends_the_other_sessions_that_sign_in_opened() -> None:
    h, _google, _kakao, owner, by_google = _account_with_google()
    assert _linked(h, owner, SnsProvider.KAKAO) == ["password", "google", "kakao"]
    by_kakao = _sns_session(h, SnsProvider.KAKAO)
    own_google = _sns_session(h, SnsProvider.GOOGLE)

    # Unlinked from a session Google opened: that one stays (the caller's), as do Kakao's and
    # the password's; the other Google session ends.
    assert h.handle(UnlinkSnsIdentity(access_token=own_google, provider=SnsProvider.GOOGLE)) == [
        "password",
        "kakao",
    ]
    assert [_live(h, t) for t in (own_google, by_kakao, owner, by_google)] == [
        True,
        True,
        True,
        False,
    ]


def test_a_link_by_a_session_ended_while_the_provider_answered_is_refused() -> None:
    """The session someone opened through a shared Google account starts linking their own
    Kakao; the owner unlinks Google meanwhile, which ends that session: the link must not
    land (it would let them back in for good)."""
    h, _google, kakao, owner, by_google = _account_with_google()
    _unlink_google_meanwhile(h, kakao, owner)
    h.fails(
        LinkSnsIdentity(
            access_token=by_google, provider=SnsProvider.KAKAO, credential=_credential()
        ),
        Reason.TOKEN_INVALID,
    )
    with h.uow(readonly=True) as tx:
        assert tx.sns_identities.find(SnsProvider.KAKAO, "kakao-subject") is None
    assert h.handle(GetAccount(access_token=owner)).sign_in_methods == ("password",)


@pytest.mark.parametrize(
    ("unlinker", "reason", "stays"),
    [
        # The owner unlinks Google: the session Google opened ends, and its withdrawal with it.
        ("owner", Reason.TOKEN_INVALID, "owner"),
        # The Google session unlinks Google itself: it survives (the caller's own), but the
        # fresh Google sign-in it withdraws with is no longer one of the account's.
        ("by_google", Reason.REAUTHENTICATION_REQUIRED, "by_google"),
    ],
)
def test_a_withdrawal_overtaken_by_an_unlink_while_the_provider_answered_is_refused(
    unlinker: str, reason: Reason, stays: str
) -> None:
    h, google, _kakao, owner, by_google = _account_with_google()
    tokens = {"owner": owner, "by_google": by_google}
    _unlink_google_meanwhile(h, google, tokens[unlinker])
    h.fails(
        Withdraw(
            access_token=by_google, sns_provider=SnsProvider.GOOGLE, sns_credential=_credential()
        ),
        reason,
    )
    assert _live(h, tokens[stays])


def _unlink_google_meanwhile(h: Harness, provider: Vouching, access_token: str) -> None:
    """While `provider` answers its next call, `access_token`'s session unlinks Google."""
    provider.meanwhile = lambda: h.handle(
        UnlinkSnsIdentity(access_token=access_token, provider=SnsProvider.GOOGLE)
    )


class CountingKakao(KakaoOf):
    """Counts the credentials it was asked about (an authorization code is spent when asked)."""

    def __init__(self, subject: str, ci: str | None) -> None:
        super().__init__(subject, ci)
        self.asked = 0

    def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
        self.asked += 1
        return super().authenticate(credential, timeout=timeout)


def test_a_sign_in_method_is_added_or_removed_only_in_a_recent_session() -> None:
    """A stolen access token of a session signed in over 10 minutes ago (refreshed since) cannot
    add the thief's own Kakao: that would outlast a password change and pass a Withdraw."""
    kakao = CountingKakao("kakao-of-thief", None)
    h = with_kakao(Harness.build(), kakao)
    account = h.sign_up_person(verified_person(), email="victim@example.com")
    assert account.session is not None
    h.clock.advance(timedelta(minutes=11))
    refreshed = h.handle(RefreshSession(refresh_token=account.session.refresh_token))

    with pytest.raises(DomainError) as refused:
        link(h, refreshed.access_token)
    assert refused.value.reason is Reason.REAUTHENTICATION_REQUIRED
    assert kakao.asked == 0, "the provider was asked (a code would be spent) before the refusal"
    assert h.handle(GetAccount(access_token=refreshed.access_token)).sign_in_methods == (
        "password",
    )

    # Signed in again: the new session may add it, and within its 10 minutes remove it.
    fresh = h.login("victim@example.com")
    assert link(h, fresh.access_token) == ["password", "kakao"]
    h.clock.advance(timedelta(minutes=11))
    again = h.handle(RefreshSession(refresh_token=fresh.refresh_token))
    with pytest.raises(DomainError) as refused:
        h.handle(UnlinkSnsIdentity(access_token=again.access_token, provider=SnsProvider.KAKAO))
    assert refused.value.reason is Reason.REAUTHENTICATION_REQUIRED
    newest = h.login("victim@example.com")
    assert h.handle(
        UnlinkSnsIdentity(access_token=newest.access_token, provider=SnsProvider.KAKAO)
    ) == ["password"]


def test_the_sign_in_age_is_checked_again_when_the_provider_has_answered() -> None:
    """Signed in 9 minutes ago, and the provider takes 2 more: the link lands at 11 minutes."""
    h = Harness.build()

    class SlowKakao(KakaoOf):
        def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
            h.clock.advance(timedelta(minutes=2))
            return super().authenticate(credential, timeout=timeout)

    with_kakao(h, SlowKakao("kakao-of-a", None))
    account = h.sign_up_person(verified_person())
    assert account.session is not None
    h.clock.advance(timedelta(minutes=9))
    with pytest.raises(DomainError) as refused:
        link(h, account.session.access_token)
    assert refused.value.reason is Reason.REAUTHENTICATION_REQUIRED
    assert h.handle(GetAccount(access_token=account.session.access_token)).sign_in_methods == (
        "password",
    )


def test_linking_and_unlinking_tell_other_systems_so_the_owner_can_be_told() -> None:
    """A way into the account added or removed: `sns_identity.linked` / `.unlinked` (ids and the
    provider only), in the transaction that made the change."""
    h = with_kakao(Harness.build(), KakaoOf("kakao-of-a", None))
    account = h.sign_up_person(verified_person())
    assert account.session is not None
    token = account.session.access_token
    link(h, token)
    h.handle(UnlinkSnsIdentity(access_token=token, provider=SnsProvider.KAKAO))
    linked = h.uow.events("sns_identity.linked")
    unlinked = h.uow.events("sns_identity.unlinked")
    expected = {"account_id": account.account.id, "provider": "kakao"}
    assert [e["data"] for e in linked] == [expected]
    assert [e["data"] for e in unlinked] == [expected]
    # A refused link writes none.
    h.clock.advance(timedelta(minutes=11))
    with pytest.raises(DomainError):
        link(h, h.handle(RefreshSession(refresh_token=account.session.refresh_token)).access_token)
    assert len(h.uow.events("sns_identity.linked")) == 1


def test_a_link_that_lands_after_an_unlink_is_the_last_event() -> None:
    """The owner unlinks Kakao from another session while a link of it waits on Kakao: the
    link lands after the unlink, and its event is ordered after the unlink's (the app's last
    word must be "linked", the way in that now exists)."""
    h = Harness.build()
    unlink_meanwhile: list[str] = []

    class SlowKakao(KakaoOf):
        def authenticate(self, credential: SnsCredential, *, timeout: float) -> SnsProfile:
            for token in unlink_meanwhile:
                h.clock.advance(timedelta(minutes=1))
                h.handle(UnlinkSnsIdentity(access_token=token, provider=SnsProvider.KAKAO))
            h.clock.advance(timedelta(minutes=1))
            return super().authenticate(credential, timeout=timeout)

    with_kakao(h, SlowKakao("kakao-of-a", None))
    signed = h.sign_up_person(verified_person(), email="order@example.com")
    assert signed.session is not None
    link(h, signed.session.access_token)
    unlink_meanwhile.append(h.login("order@example.com").access_token)
    assert link(h, signed.session.access_token) == ["password", "kakao"]
    order = [
        e["type"]
        for e in h.uow.events()
        if e["type"] in ("sns_identity.linked", "sns_identity.unlinked")
    ]
    assert order == ["sns_identity.linked", "sns_identity.unlinked", "sns_identity.linked"]
