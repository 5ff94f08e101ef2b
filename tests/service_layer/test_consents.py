"""Consents on the fakes: UpdateConsents at once, and the two-year marketing reconfirmation."""

from __future__ import annotations

from datetime import timedelta

from idservice.service_layer.privacy import UpdateConsents
from idservice.service_layer.retention import Purge
from idservice.service_layer.sessions import IntrospectToken
from tests.fakes.providers import verified_person
from tests.service_layer.harness import Harness


def test_an_opt_in_is_reconfirmed_every_two_years(svc: Harness) -> None:
    """정보통신망법 제50조⑧: at 2, 4, 6 … years from the opt-in, once each."""
    result = svc.sign_up_person(verified_person())
    assert result.session is not None
    token = result.session.access_token
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    assert svc.handle(IntrospectToken(access_token=token)).marketing_opt_in
    svc.clock.advance(timedelta(days=365))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    svc.clock.advance(timedelta(days=366))  # two years and a day after the opt-in
    assert svc.handle(Purge())["marketing reconfirmations due"] == 1
    [due] = svc.uow.events("marketing_consent.reconfirmation_due")
    assert due["data"]["account_id"] == result.account.id
    # Once: the next runs do not ask again, until the opt-in turns four.
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    svc.clock.advance(timedelta(days=729))  # a day before the fourth anniversary
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    svc.clock.advance(timedelta(days=2))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 1
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    events = svc.uow.events("marketing_consent.reconfirmation_due")
    assert [e["data"]["opted_in_at"] for e in events] == [due["data"]["opted_in_at"]] * 2


def test_opting_in_again_reconfirms_and_restarts_the_two_years(svc: Harness) -> None:
    result = svc.sign_up_person(verified_person(), email="mk@example.com")
    assert result.session is not None
    token = result.session.access_token
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    svc.clock.advance(timedelta(days=731))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 1
    svc.clock.advance(timedelta(days=30))  # the person answers the reminder: yes, keep it
    reconfirmed_at = svc.clock()
    token = svc.login("mk@example.com").access_token
    consents = svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    assert consents.marketing_opt_in and consents.marketing_updated_at == reconfirmed_at
    records = [
        r
        for r in svc.uow.committed().consent_records
        if r.account_id == result.account.id and r.consent_type.value == "marketing"
    ]
    assert [(r.granted, r.recorded_at == reconfirmed_at) for r in records] == [
        (True, False),
        (True, True),
    ]
    # No flag changed: nothing for other systems to act on.
    assert len(svc.uow.events("consents.updated")) == 1
    # The next reminder is two years from the re-confirmation, not from the first opt-in.
    svc.clock.advance(timedelta(days=700))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    svc.clock.advance(timedelta(days=31))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 1
    first, second = svc.uow.events("marketing_consent.reconfirmation_due")
    assert first["data"]["opted_in_at"] != second["data"]["opted_in_at"]


def test_a_withdrawn_opt_in_is_not_reconfirmed(svc: Harness) -> None:
    result = svc.sign_up_person(verified_person())
    assert result.session is not None
    token = result.session.access_token
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=True))
    svc.clock.advance(timedelta(minutes=1))  # events of one instant have no order among calls
    svc.handle(UpdateConsents(access_token=token, marketing_opt_in=False))
    svc.clock.advance(timedelta(days=800))
    assert svc.handle(Purge())["marketing reconfirmations due"] == 0
    updated = svc.uow.events("consents.updated")
    assert [e["data"]["marketing_opt_in"] for e in updated] == [True, False]
