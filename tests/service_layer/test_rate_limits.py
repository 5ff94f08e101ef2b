"""Limits per end-user address against fakes: failed logins, CompleteVerification, consent codes
and consent resends. The address is the one a trusted proxy named; without one nothing is
limited per address."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta

from idservice.domain.errors import Reason
from idservice.service_layer.guardian_consent import (
    ApproveConsentRequest,
    RejectConsentRequest,
    ResendConsentNotification,
)
from idservice.service_layer.login import PasswordLogin
from idservice.service_layer.policy import Policy
from idservice.service_layer.rate_limits import RateLimit, RateLimits, Scope
from idservice.service_layer.verification import CompleteVerification
from tests.fakes.providers import verified_person
from tests.service_layer.harness import PASSWORD, Harness, new_email
from tests.service_layer.test_guardian_consent import child_signs_up, code_of, wrong_code

WINDOW = timedelta(minutes=1)
LIMIT = 3
ADDRESS = "203.0.113.7"
OTHER = "198.51.100.9"


def limited(**limits: RateLimit) -> Harness:
    return Harness.build(Policy(rate_limits=RateLimits(**limits)))


def login(email: str, password: str = PASSWORD, address: str = ADDRESS) -> PasswordLogin:
    return PasswordLogin(email=email, password=password, client_address=address)


def test_failed_logins_past_the_limit_refuse_the_address_until_the_window_ends() -> None:
    svc = limited(failed_logins=RateLimit(LIMIT, WINDOW))
    email = new_email()
    account_id = svc.sign_up_person(verified_person(), email=email).account.id
    svc.clock.advance(seconds=10)
    for _ in range(LIMIT - 1):
        svc.fails(login(new_email()), Reason.INVALID_CREDENTIALS)  # unknown emails count
    svc.fails(login(email, "wrong"), Reason.INVALID_CREDENTIALS)
    hashing, state = svc.hasher.calls.copy(), copy.deepcopy(svc.uow.committed())

    error = svc.fails(login(new_email()), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == WINDOW.total_seconds()
    # A refused login does no Argon2 work and writes nothing but its address's counter.
    assert svc.hasher.calls == hashing
    assert dataclasses.replace(svc.uow.committed(), attempt_counters={}) == dataclasses.replace(
        state, attempt_counters={}
    )
    # The right password too, until the window ends; another address is not limited.
    svc.clock.advance(seconds=30)
    error = svc.fails(login(email), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == (WINDOW - timedelta(seconds=30)).total_seconds()
    assert svc.handle(login(email, address=OTHER)).account_id == account_id
    svc.clock.advance(seconds=30)
    assert svc.handle(login(email)).account_id == account_id


def test_successful_logins_do_not_count() -> None:
    svc = limited(failed_logins=RateLimit(LIMIT, WINDOW))
    email = new_email()
    svc.sign_up_person(verified_person(), email=email)
    for _ in range(3 * LIMIT):
        svc.handle(login(email))
    for _ in range(LIMIT):
        svc.fails(login(new_email()), Reason.INVALID_CREDENTIALS)
    svc.fails(login(email), Reason.RATE_LIMITED)


def test_logins_refused_for_the_account_do_not_count_for_the_address() -> None:
    svc = limited(failed_logins=RateLimit(LIMIT, WINDOW))
    email = new_email()
    svc.sign_up_person(verified_person(), email=email)
    for _ in range(svc.policy.lockout.threshold):
        svc.fails(login(email, "wrong", address=""), Reason.INVALID_CREDENTIALS)
    for _ in range(2 * LIMIT):  # no password is checked on a locked account
        svc.fails(login(email), Reason.ACCOUNT_LOCKED)
    svc.fails(login(new_email()), Reason.INVALID_CREDENTIALS)


def test_without_an_end_user_address_nothing_is_limited_per_address() -> None:
    svc = limited(failed_logins=RateLimit(1, WINDOW), verifications=RateLimit(1, WINDOW))
    for _ in range(5):
        svc.fails(login(new_email(), address=""), Reason.INVALID_CREDENTIALS)
        svc.verify(verified_person())
    assert not svc.uow.committed().attempt_counters


def test_counters_keep_a_keyed_hash_of_the_address_never_the_address() -> None:
    svc = limited()
    svc.fails(login(new_email()), Reason.INVALID_CREDENTIALS)
    counters = svc.uow.committed().attempt_counters
    [(scope, key)] = counters
    assert scope == Scope.FAILED_LOGINS.value
    assert ADDRESS not in key and len(key) == 64


def test_an_ipv6_subscriber_prefix_is_one_address_and_mapped_ipv4_is_ipv4() -> None:
    svc = limited(failed_logins=RateLimit(2, WINDOW))
    svc.fails(login(new_email(), address="2001:db8:1:2::1"), Reason.INVALID_CREDENTIALS)
    svc.fails(login(new_email(), address="2001:db8:1:2:ffff::9"), Reason.INVALID_CREDENTIALS)
    svc.fails(login(new_email(), address="2001:db8:1:2::77"), Reason.RATE_LIMITED)
    svc.fails(login(new_email(), address="2001:db8:1:3::1"), Reason.INVALID_CREDENTIALS)

    svc.fails(login(new_email(), address="192.0.2.1"), Reason.INVALID_CREDENTIALS)
    svc.fails(login(new_email(), address="::ffff:192.0.2.1"), Reason.INVALID_CREDENTIALS)
    svc.fails(login(new_email(), address="192.0.2.1"), Reason.RATE_LIMITED)


def verification(svc: Harness, address: str = ADDRESS) -> CompleteVerification:
    return CompleteVerification(
        provider=None,
        verification_id=svc.provider.verify(verified_person()),
        client_address=address,
    )


def test_verifications_past_the_limit_are_refused_before_the_provider_is_asked() -> None:
    svc = limited(verifications=RateLimit(LIMIT, WINDOW))
    for _ in range(LIMIT):
        svc.handle(verification(svc))
    fetches, stored = len(svc.provider.fetches), len(svc.uow.committed().verifications)
    error = svc.fails(verification(svc), Reason.RATE_LIMITED)
    assert error.retry_after_seconds == WINDOW.total_seconds()
    assert len(svc.provider.fetches) == fetches
    assert len(svc.uow.committed().verifications) == stored
    svc.handle(verification(svc, OTHER))
    svc.clock.advance(WINDOW)
    svc.handle(verification(svc))


def test_the_limit_of_consent_codes_per_address_is_the_configured_one() -> None:
    svc = limited(consent_codes=RateLimit(2, timedelta(minutes=5)))
    child = child_signs_up(svc)
    code = code_of(svc, child)
    for _ in range(2):
        svc.fails(
            RejectConsentRequest(
                id=child.request_id, consent_code=wrong_code(code), client_address=ADDRESS
            ),
            Reason.CONSENT_CODE_INVALID,
        )
    token = svc.verify(child.guardian_person).token
    approval = ApproveConsentRequest(
        id=child.request_id,
        consent_code=code,
        guardian_verification_token=token,
        client_address=ADDRESS,
    )
    error = svc.fails(approval, Reason.RATE_LIMITED)
    assert error.retry_after_seconds == timedelta(minutes=5).total_seconds()
    svc.clock.advance(minutes=5)
    assert svc.handle(approval) == child.account_id


def test_resends_are_limited_per_address_across_requests() -> None:
    svc = limited(consent_resends=RateLimit(2, timedelta(minutes=10)))
    children = [child_signs_up(svc) for _ in range(3)]
    svc.clock.advance(minutes=1)
    for child in children[:2]:
        svc.handle(ResendConsentNotification(id=child.request_id, client_address=ADDRESS))
    events = len(svc.uow.events("guardian_consent.requested"))
    resend = ResendConsentNotification(id=children[2].request_id, client_address=ADDRESS)
    error = svc.fails(resend, Reason.RATE_LIMITED)
    assert error.retry_after_seconds == timedelta(minutes=10).total_seconds()
    assert len(svc.uow.events("guardian_consent.requested")) == events
    assert svc.uow.committed().consent_requests[children[2].request_id].notifications_sent == 1
    svc.handle(ResendConsentNotification(id=children[2].request_id, client_address=OTHER))
