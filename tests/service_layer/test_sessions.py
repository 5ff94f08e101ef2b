"""Sessions against fakes: refresh rotation and reuse detection, logout, introspection."""

from __future__ import annotations

from datetime import timedelta

from idservice.domain.errors import Reason
from idservice.domain.sessions import RevokeReason
from idservice.service_layer.sessions import (
    GetJwks,
    IntrospectToken,
    IssuedSession,
    Logout,
    RefreshSession,
)
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Harness


def session_of(svc: Harness) -> IssuedSession:
    result = svc.sign_up_person(verified_person())
    assert result.session is not None
    return result.session


def test_refresh_rotates_the_refresh_token_within_the_session(svc: Harness) -> None:
    first = session_of(svc)
    svc.clock.advance(minutes=1)
    second = svc.handle(RefreshSession(refresh_token=first.refresh_token))
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.refresh_token_expires_at == first.refresh_token_expires_at
    third = svc.handle(RefreshSession(refresh_token=second.refresh_token))
    assert third.session_id == first.session_id


def test_reusing_a_rotated_token_revokes_the_session(svc: Harness) -> None:
    first = session_of(svc)
    second = svc.handle(RefreshSession(refresh_token=first.refresh_token))

    svc.fails(RefreshSession(refresh_token=first.refresh_token), Reason.TOKEN_INVALID)

    row = svc.uow.committed().sessions[first.session_id]
    assert row.session.revoked_at == svc.clock()
    assert row.revoked_reason == RevokeReason.REFRESH_REUSE.value
    [event] = svc.uow.events("session.reuse_detected")
    assert event["data"] == {"account_id": first.account_id, "session_id": first.session_id}
    # The legitimate holder's newer token is dead too, and so is the access token.
    svc.fails(RefreshSession(refresh_token=second.refresh_token), Reason.TOKEN_INVALID)
    assert not svc.handle(IntrospectToken(access_token=second.access_token)).active
    # A second reuse does not report the same session again.
    svc.fails(RefreshSession(refresh_token=first.refresh_token), Reason.TOKEN_INVALID)
    assert len(svc.uow.events("session.reuse_detected")) == 1


def test_an_expired_refresh_token_is_token_expired(svc: Harness) -> None:
    issued = session_of(svc)
    svc.clock.set(issued.refresh_token_expires_at)
    svc.fails(RefreshSession(refresh_token=issued.refresh_token), Reason.TOKEN_EXPIRED)


def test_unknown_or_oversized_refresh_tokens_are_invalid(svc: Harness) -> None:
    svc.fails(RefreshSession(refresh_token="no-such-token"), Reason.TOKEN_INVALID)
    svc.fails(RefreshSession(refresh_token=""), Reason.TOKEN_INVALID)
    svc.fails(RefreshSession(refresh_token="x" * 9000), Reason.TOKEN_INVALID)


def test_logout_ends_the_session_and_is_idempotent(svc: Harness) -> None:
    issued = session_of(svc)
    svc.handle(Logout(refresh_token=issued.refresh_token))
    row = svc.uow.committed().sessions[issued.session_id]
    assert row.revoked_reason == RevokeReason.LOGOUT.value
    svc.fails(RefreshSession(refresh_token=issued.refresh_token), Reason.TOKEN_INVALID)
    svc.handle(Logout(refresh_token=issued.refresh_token))  # again: no error
    svc.fails(Logout(refresh_token="unknown"), Reason.TOKEN_INVALID)


def test_introspection_is_active_until_logout(svc: Harness) -> None:
    issued = session_of(svc)
    answer = svc.handle(IntrospectToken(access_token=issued.access_token))
    assert answer.active
    assert (answer.account_id, answer.session_id) == (issued.account_id, issued.session_id)
    assert answer.expires_at == issued.access_token_expires_at
    assert answer.age_band == "adult"

    svc.handle(Logout(refresh_token=issued.refresh_token))
    assert svc.handle(IntrospectToken(access_token=issued.access_token)).active is False


def test_introspection_of_expired_or_foreign_tokens_is_inactive(svc: Harness) -> None:
    issued = session_of(svc)
    assert not svc.handle(IntrospectToken(access_token="not-a-token")).active
    assert not svc.handle(IntrospectToken(access_token="")).active
    svc.clock.advance(svc.tokens.ttl - timedelta(seconds=1))
    assert svc.handle(IntrospectToken(access_token=issued.access_token)).active
    svc.clock.advance(seconds=1)
    assert not svc.handle(IntrospectToken(access_token=issued.access_token)).active


def test_jwks_comes_from_the_token_issuer(svc: Harness) -> None:
    assert svc.handle(GetJwks()) == svc.tokens.jwks_json()
